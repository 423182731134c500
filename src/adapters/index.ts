/**
 * Adapter kinds Patchbay can load. Adding a kind = its own file implementing `AdapterKind` + one line here.
 */
import { basename } from 'node:path';
import { assertAdapterDir } from './adapter-files.ts';
import { invalidAdapter, type AttachTarget } from './attach-target.ts';
import type { AdapterKind, LoadedAdapter } from './kind.ts';
import { loraKind } from './lora.ts';
import { s2ftKind } from './s2ft.ts';

export const ADAPTER_KINDS: readonly AdapterKind[] = [
  loraKind,
  s2ftKind,
];

export async function detectKind(dir: string, id = basename(dir)): Promise<AdapterKind> {
  await assertAdapterDir(id, dir);
  for (const k of ADAPTER_KINDS) if (await k.detect(dir)) return k;
  throw invalidAdapter(id, `is no known adapter kind (${ADAPTER_KINDS.map((k) => k.kind).join(', ')}): adapter_config.json missing or its peft_type unsupported`, 'unsupported_adapter_feature');
}

/** Load the adapter in `dir` (id defaults to the directory name): 404 when absent, 400 when it does not fit. */
export async function loadAdapter(dir: string, target: AttachTarget, id = basename(dir)): Promise<LoadedAdapter> {
  const kind = await detectKind(dir, id);
  return kind.load(dir, target, id);
}

/** Header-only validation of the adapter in `dir` against `target` (see AdapterKind.check). */
export async function checkAdapter(dir: string, target: AttachTarget, id = basename(dir)): Promise<void> {
  const kind = await detectKind(dir, id);
  await kind.check(dir, target, id);
}

export type { AdapterKind, LoadedAdapter } from './kind.ts';
export { factorFootprint } from './kind.ts';
export { attachTarget, type AttachLayer, type AttachTarget } from './attach-target.ts';
export { combineBindings, combinationKey, type WeightedBinding } from './combine.ts';
