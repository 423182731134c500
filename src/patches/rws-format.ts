/**
 * The RWS patch file format (Patchbay's own; the paper fixes none): one safetensors file,
 * `<patch dir>/patch.safetensors`, holding per affected linear layer the quantised robust weight signature
 *
 *     <module>.rws.q      U8 (levels ≤ 256) or U16 (≤ 65536)  [d_in, d_out]  (graph orientation: y = x·W)
 *     <module>.rws.range  F32 [2] = (min, max)
 *
 * dequantised as  v = min + q·(max − min)/(levels − 1)  (computed in float64, rounded to float32), and
 * `__metadata__` (all strings, as safetensors requires):
 *
 *     format "patchbay.rws/1", method "rws", base_model (model id), base_fingerprint (sha256 of the
 *     affected pristine weights, float32 little-endian, modules in sorted order), levels, corruption,
 *     layers (comma-separated modules), and optionally source checkpoints and notes.
 *
 * Quantisation (Cai et al. 2023): q = round((v − min)/(max − min)·(levels − 1)), per tensor.
 */
import { createHash } from 'node:crypto';

export const PATCH_FILE = 'patch.safetensors';
export const RWS_FORMAT = 'patchbay.rws/1';
export const MIN_LEVELS = 2;
export const MAX_LEVELS = 65536;

export const qName = (module: string) => `${module}.rws.q`;
export const rangeName = (module: string) => `${module}.rws.range`;

/** `transformer.h.0.mlp.c_fc.rws.q` → `transformer.h.0.mlp.c_fc` (undefined for other names). */
export function moduleOf(tensorName: string): { module: string; part: 'q' | 'range' } | undefined {
  const m = /^(.+)\.rws\.(q|range)$/.exec(tensorName);
  return m ? { module: m[1]!, part: m[2] as 'q' | 'range' } : undefined;
}

export interface RwsMetadata {
  format: string;
  method: 'rws';
  baseModel: string;
  baseFingerprint: string;
  levels: number;
  corruption: string;
  layers: string[];
  extra: Record<string, string>;
}

export interface Quantised {
  q: Uint8Array | Uint16Array;
  min: number;
  max: number;
  levels: number;
}

/** Uniform per-tensor quantisation of `v` to `levels` levels. */
export function quantise(v: Float64Array | Float32Array, levels: number): Quantised {
  let min = Infinity;
  let max = -Infinity;
  for (const x of v) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  // Stored as float32: quantise against the stored bounds so decode uses exactly what encode used.
  min = Math.fround(min);
  max = Math.fround(max);
  const q = levels <= 256 ? new Uint8Array(v.length) : new Uint16Array(v.length);
  const span = max - min;
  if (span > 0) {
    const scale = (levels - 1) / span;
    for (let i = 0; i < v.length; i++) q[i] = Math.min(levels - 1, Math.max(0, Math.round((v[i]! - min) * scale)));
  }
  return { q, min, max, levels };
}

/** v = min + q·(max − min)/(levels − 1), times `alpha`, accumulated into `out` (float64 math, float32 out). */
export function dequantiseInto(out: Float32Array, t: Quantised, alpha = 1): void {
  const step = t.levels > 1 ? (t.max - t.min) / (t.levels - 1) : 0;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! + alpha * Math.fround(t.min + t.q[i]! * step);
}

export function dequantise(t: Quantised): Float32Array {
  const out = new Float32Array(t.q.length);
  dequantiseInto(out, t);
  return out;
}

/** sha256 over the given float32 tensors' little-endian bytes, in sorted module order. */
export function fingerprint(tensors: ReadonlyMap<string, Float32Array>): string {
  const h = createHash('sha256');
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    h.update(name);
    h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  return h.digest('hex');
}
