/**
 * Dequantization of the plain and 32-weight block types, bit-exact with llama.cpp's `dequantize_row_*` and
 * gguf-py's `gguf.quants.dequantize`: every product and sum is rounded to float32 (Math.fround) in the same
 * order as the float32 C/NumPy code. JS computes in float64, and float64 → float32 rounding of a single
 * float32 +, −, × is the correctly rounded float32 result (53 ≥ 2·24 + 2), so the values are identical.
 *
 *   Q8_0  block = f16 d | 32 × int8 q            w = d·q
 *   Q4_0  block = f16 d | 16 bytes of nibbles     w = d·(q − 8)
 *   Q4_1  block = f16 d | f16 m | 16 bytes        w = d·q + m
 * Nibble order: weight j of a block is the low nibble of byte j, weight j+16 its high nibble.
 */
import { halfTable } from './half.ts';

const fr = Math.fround;

export function dequantF32(src: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(src.subarray(0, n * 4));
  return out;
}

export function dequantF16(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = h[dv.getUint16(2 * i, true)]!;
  return out;
}

/** bfloat16 is the top half of a float32. */
export function dequantBf16(src: Uint8Array, n: number): Float32Array {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = dv.getUint16(2 * i, true) << 16;
  return new Float32Array(bits.buffer);
}

export function dequantQ8_0(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const out = new Float32Array(n);
  for (let b = 0, o = 0; o < n; b += 34, o += 32) {
    const d = h[src[b]! | (src[b + 1]! << 8)]!;
    for (let j = 0; j < 32; j++) out[o + j] = fr(d * ((src[b + 2 + j]! << 24) >> 24));
  }
  return out;
}

export function dequantQ4_0(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const out = new Float32Array(n);
  for (let b = 0, o = 0; o < n; b += 18, o += 32) {
    const d = h[src[b]! | (src[b + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[b + 2 + j]!;
      out[o + j] = fr(d * ((q & 0x0f) - 8));
      out[o + j + 16] = fr(d * ((q >> 4) - 8));
    }
  }
  return out;
}

export function dequantQ4_1(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const out = new Float32Array(n);
  for (let b = 0, o = 0; o < n; b += 20, o += 32) {
    const d = h[src[b]! | (src[b + 1]! << 8)]!;
    const m = h[src[b + 2]! | (src[b + 3]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[b + 4 + j]!;
      out[o + j] = fr(fr(d * (q & 0x0f)) + m);
      out[o + j + 16] = fr(fr(d * (q >> 4)) + m);
    }
  }
  return out;
}
