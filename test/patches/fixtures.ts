/**
 * Synthetic RWS patches for tests: clean and robust "fine-tunes" of the committed tiny GPT-2 made by adding
 * seeded noise to a few linear weights (written as HF safetensors checkpoints with config.json), extracted
 * with the real `rws:extract` code. The trained patches (adapters/rws-*) are used by the reference tests.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { openCheckpoint } from '../../src/patches/checkpoint.ts';
import { extract } from '../../src/patches/rws-extract.ts';
import { modelDir } from '../registry/fixtures.ts';

/** Deterministic N(0, 1)-ish noise (sum of uniforms), so fixtures do not depend on Math.random. */
export function noise(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (next() + next() + next() - 1.5) * 2;
  return out;
}

export const MODULES = ['transformer.h.0.mlp.c_fc', 'transformer.h.1.attn.c_attn'];

/** Every block linear weight of the base, + noise(seed) on MODULES, saved as an HF GPT-2 checkpoint (Conv1D weights are [d_in, d_out]). */
export async function writeTuned(dir: string, seed: number, scale = 0.02): Promise<string> {
  const base = await openCheckpoint(modelDir('tiny-gpt2'));
  const tensors: Record<string, TensorToWrite> = {};
  for (const [m, w] of base.layers) {
    if (!m.includes('.h.')) continue;
    const data = await w.read();
    const k = MODULES.indexOf(m);
    if (k >= 0) {
      const d = noise(data.length, seed * 100 + k, scale);
      for (let i = 0; i < data.length; i++) data[i]! += d[i]!;
    }
    tensors[`${m}.weight`] = { dtype: 'F32', shape: [w.dIn, w.dOut], data };
  }
  await base.close();
  await mkdir(dir, { recursive: true });
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  await writeFile(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2' }));
  return dir;
}

/** A synthetic patch in `<root>/<id>` extracted by the real CLI code; returns its directory. */
export async function writePatch(root: string, id: string, seed: number, levels = 256): Promise<string> {
  const clean = await writeTuned(path.join(root, `.ckpt-${id}-clean`), seed);
  const robust = await writeTuned(path.join(root, `.ckpt-${id}-robust`), seed + 1);
  const out = path.join(root, id);
  await extract({ base: modelDir('tiny-gpt2'), clean, robust, levels, layers: 'mlp.c_fc$,attn.c_attn$', corruption: `synthetic-${seed}`, out, baseModel: 'tiny-gpt2' }, () => {});
  return out;
}
