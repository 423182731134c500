/**
 * Dequantization of the K-quants (256-weight super-blocks), bit-exact with llama.cpp's
 * `dequantize_row_q4_K` / `dequantize_row_q6_K` and gguf-py (float32 rounding after each operation, see
 * dequantize-blocks.ts).
 *
 * Q4_K (144 bytes): f16 d | f16 dmin | 12 bytes scales | 128 bytes qs. Eight sub-blocks of 32 with 6-bit
 *   scale sc_s and min m_s (get_scale_min_k4: s < 4: sc = b[s] & 63, m = b[s+4] & 63; s ≥ 4:
 *   sc = (b[s+4] & 15) | (b[s−4] >> 6) << 4, m = (b[s+4] >> 4) | (b[s] >> 6) << 4).
 *   w = (d·sc_s)·q − dmin·m_s; chunk j of 64 weights uses qs[32j..32j+31]: low nibbles are sub-block 2j,
 *   high nibbles sub-block 2j+1.
 * Q6_K (210 bytes): ql[128] | qh[64] | int8 scales[16] | f16 d. Weight e of half h (e < 128), k = e/32,
 *   l = e%32: low 4 bits from ql[64h + l + 32·(k&1)] (nibble k>>1), high 2 bits from qh[32h + l] >> 2k;
 *   q − 32 is scaled by d·scales[e_global / 16].
 */
import { halfTable } from './half.ts';

const fr = Math.fround;

export function dequantQ4_K(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const out = new Float32Array(n);
  const sc = new Float32Array(8);
  const mn = new Float32Array(8);
  for (let b = 0, o = 0; o < n; b += 144, o += 256) {
    const d = h[src[b]! | (src[b + 1]! << 8)]!;
    const dmin = h[src[b + 2]! | (src[b + 3]! << 8)]!;
    const s = b + 4;
    for (let j = 0; j < 8; j++) {
      let scale: number;
      let min: number;
      if (j < 4) {
        scale = src[s + j]! & 63;
        min = src[s + j + 4]! & 63;
      } else {
        scale = (src[s + j + 4]! & 0x0f) | ((src[s + j - 4]! >> 6) << 4);
        min = (src[s + j + 4]! >> 4) | ((src[s + j]! >> 6) << 4);
      }
      sc[j] = fr(d * scale);
      mn[j] = fr(dmin * min);
    }
    const qs = b + 16;
    for (let j = 0; j < 4; j++) {
      const d1 = sc[2 * j]!, m1 = mn[2 * j]!, d2 = sc[2 * j + 1]!, m2 = mn[2 * j + 1]!;
      const base = o + 64 * j;
      for (let l = 0; l < 32; l++) {
        const q = src[qs + 32 * j + l]!;
        out[base + l] = fr(fr(d1 * (q & 0x0f)) - m1);
        out[base + 32 + l] = fr(fr(d2 * (q >> 4)) - m2);
      }
    }
  }
  return out;
}

export function dequantQ6_K(src: Uint8Array, n: number): Float32Array {
  const h = halfTable();
  const out = new Float32Array(n);
  const ds = new Float32Array(16);
  for (let b = 0, o = 0; o < n; b += 210, o += 256) {
    const d = h[src[b + 208]! | (src[b + 209]! << 8)]!;
    for (let i = 0; i < 16; i++) ds[i] = fr(d * ((src[b + 192 + i]! << 24) >> 24));
    for (let half = 0; half < 2; half++) {
      const ql = b + 64 * half;
      const qh = b + 128 + 32 * half;
      const y = o + 128 * half;
      const sc = 8 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hi = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0x0f) | ((hi & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0x0f) | (((hi >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((hi >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((hi >> 6) & 3) << 4)) - 32;
        out[y + l] = fr(ds[sc + is]! * q1);
        out[y + l + 32] = fr(ds[sc + is + 2]! * q2);
        out[y + l + 64] = fr(ds[sc + is + 4]! * q3);
        out[y + l + 96] = fr(ds[sc + is + 6]! * q4);
      }
    }
  }
  return out;
}
