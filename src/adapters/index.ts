/**
 * Adapter kinds Patchbay can load. Adding a kind = its own file implementing `AdapterKind` + one line here.
 */
import { basename } from 'node:path';
import { adapterSource, type AdapterSource } from './adapter-files.ts';
import { invalidAdapter, type AttachTarget } from './attach-target.ts';
import type { AdapterKind, LoadedAdapter } from './kind.ts';
import { loraKind } from './lora.ts';
import { s2ftKind } from './s2ft.ts';

export const ADAPTER_KINDS: readonly AdapterKind[] = [
  loraKind,
  s2ftKind,
];

function kindOf(src: AdapterSource): AdapterKind {
  for (const k of ADAPTER_KINDS) if (k.detect(src.config)) return k;
  throw invalidAdapter(src.id, `is no known adapter kind (${ADAPTER_KINDS.map((k) => k.kind).join(', ')}): adapter_config.json missing or its peft_type unsupported`, 'unsupported_adapter_feature');
}

/** The kind of the adapter in `dir`: 404 when there is no such directory, 400 when no kind claims it. */
export async function detectKind(dir: string, id = basename(dir)): Promise<AdapterKind> {
  return kindOf(await adapterSource(id, dir, 'check'));
}

/**
 * Load the adapter in `dir` (id defaults to the directory name): 404 when absent, 400 when it does not fit.
 * Each file is read once (adapter-files.ts); the weights read starts alongside the config read.
 */
export async function loadAdapter(dir: string, target: AttachTarget, id = basename(dir)): Promise<LoadedAdapter> {
  const src = await adapterSource(id, dir, 'load');
  try {
    return await kindOf(src).load(src, target);
  } finally {
    src.release();
  }
}

/** Header-only validation of the adapter in `dir` against `target` (see AdapterKind.check): the layers it targets. */
export async function checkAdapter(dir: string, target: AttachTarget, id = basename(dir)): Promise<string[]> {
  const src = await adapterSource(id, dir, 'check');
  return kindOf(src).check(src, target);
}

export type { AdapterKind, LoadedAdapter } from './kind.ts';
export { factorFootprint } from './kind.ts';
export { attachTarget, type AttachLayer, type AttachTarget } from './attach-target.ts';
export { combineBindings, combinationKey, type WeightedBinding } from './combine.ts';
