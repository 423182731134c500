/** Loads the PyTorch/NumPy RLSEdit reference (tools/edits/make_fixture.py) and the layer specs it was made from. */
import { readFileSync } from 'node:fs';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import type { LayerEdit, LayerSpec } from '../../src/edits/edit-state.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';

export interface RefEdit {
  prompt: string;
  target: string;
  subject?: string;
  u: number;
  keys: Record<string, number[][]>;
  /** Anchor keys (settings.anchorSubjects), after the edit's own rows in the update; absent in older fixtures. */
  anchor_keys?: Record<string, number[][]>;
  /** u + anchors rows. */
  values: Record<string, number[][]>;
  delta: number[][];
  grad0: number[][];
  steps: number;
  final_nll: number;
}

export interface Reference {
  layers: string[];
  /** Key positions the fixture was made with (absent in fixtures from before the setting: subject+targets). */
  keys?: 'subject' | 'subject+targets';
  /** Anchor subjects the fixture was made with (absent: none). */
  anchors?: string[];
  lambda: number;
  mu: number;
  edits: RefEdit[];
  final: Record<string, { probes: number[][]; c0_probe: number[][]; dw_probe: number[][]; c_probe: number[][]; c_diag: number[] }>;
}

export const reference = JSON.parse(readFileSync('test/fixtures/edits/reference.json', 'utf8')) as Reference;

export function gpt2Specs(layers: readonly string[]): LayerSpec[] {
  const table = InitializerTable.of(new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx')));
  const stats = decodeSafetensors(new Uint8Array(readFileSync('models/tiny-gpt2/edit_stats.safetensors')));
  return layers.map((name) => {
    const initializer = `${name}.weight`;
    const w0 = table.read(initializer);
    const mom2 = stats.tensor(`${name}.mom2`).data as Float32Array;
    const dK = Math.sqrt(mom2.length);
    return { name, initializer, dK, dV: w0.length / dK, w0, mom2 };
  });
}

/** max |a − b| / max |b|: one relative error for a whole array. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/** P·M for probes P [p, n] and M [n, m] row-major. */
export function probe(p: number[][], m: Float64Array, n: number, cols: number): number[] {
  const out: number[] = [];
  for (const row of p) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += row[i]! * m[i * cols + j]!;
      out.push(s);
    }
  }
  return out;
}

/** P·C·Pᵀ. */
export function probe2(p: number[][], c: Float64Array, n: number): number[] {
  const pc = probe(p, c, n, n);
  const out: number[] = [];
  for (let a = 0; a < p.length; a++) {
    for (let b = 0; b < p.length; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += pc[a * n + i]! * p[b]![i]!;
      out.push(s);
    }
  }
  return out;
}

/** The fixture's update of one edit for every layer: the edit's keys then its anchor keys, and all values. */
export function refParts(ref: RefEdit, layers: readonly string[]): LayerEdit[] {
  return layers.map((name) => {
    const rows = [...ref.keys[name]!, ...(ref.anchor_keys?.[name] ?? [])];
    return { layer: name, u: rows.length, keys: Float64Array.from(rows.flat()), values: Float64Array.from(ref.values[name]!.flat()) };
  });
}
