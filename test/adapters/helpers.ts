/** Shared test fixtures: a GPT-2-shaped attach target, random tensors, adapter directories, dense ΔW. */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AttachLayer, AttachTarget } from '../../src/adapters/attach-target.ts';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import type { LayerFactors } from '../../src/runtime/types.ts';

export const DIMS: Record<string, [number, number]> = {};
for (const l of [0, 1]) {
  DIMS[`transformer.h.${l}.attn.c_attn`] = [8, 24];
  DIMS[`transformer.h.${l}.attn.c_proj`] = [8, 8];
  DIMS[`transformer.h.${l}.mlp.c_fc`] = [8, 16];
  DIMS[`transformer.h.${l}.mlp.c_proj`] = [16, 8];
}
DIMS.lm_head = [8, 10];

export function target(select: (name: string) => boolean = (n) => n !== 'lm_head', baseModelNames?: string[]): AttachTarget {
  const all = new Map<string, AttachLayer>(Object.entries(DIMS).map(([name, [dIn, dOut]]) => [name, { name, dIn, dOut }]));
  return {
    graphLayers: all,
    layers: new Map([...all].filter(([n]) => select(n))),
    selection: 'test',
    ...(baseModelNames ? { baseModelNames } : {}),
  };
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function rand(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => r());
}

export async function tempDir(prefix = 'adapter-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function writeAdapter(dir: string, config: unknown, tensors: Record<string, TensorToWrite> | Uint8Array): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'adapter_config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  await writeFile(join(dir, 'adapter_model.safetensors'), tensors instanceof Uint8Array ? tensors : encodeSafetensors(tensors));
  return dir;
}

/** Dense ΔW in PyTorch layout [dOut, dIn] of factors: ΔWᵀ = a·b. */
export function denseOfFactors(f: LayerFactors, dIn: number, dOut: number): Float64Array {
  const w = new Float64Array(dOut * dIn);
  for (let o = 0; o < dOut; o++) for (let i = 0; i < dIn; i++) {
    let s = 0;
    for (let j = 0; j < f.rank; j++) s += f.a[i * f.rank + j]! * f.b[j * dOut + o]!;
    w[o * dIn + i] = s;
  }
  return w;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-5): void {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i]! - expected[i]!) <= tol)) throw new Error(`at ${i}: ${actual[i]} vs ${expected[i]} (tol ${tol})`);
  }
}
