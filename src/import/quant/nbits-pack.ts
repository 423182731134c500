/**
 * Map GGUF quantized blocks onto `com.microsoft.MatMulNBits` tensors without re-quantizing.
 *
 * Every supported GGUF type stores, per block of `sub` weights along the input dimension K, small integers
 * q and float parameters with w = scale·q + offset. MatMulNBits stores unsigned integers u with a
 * per-block scale and (default, symmetric) zero point zp = 2^(bits−1):
 *
 *     w[n, k] = scale[n, b]·(u[n, k] − zp) + offset[b, n]          b = ⌊k / sub⌋
 *
 * so we write u = q_signed + zp, keep the scale, and return the offset (zero for symmetric types) for a
 * separate correction y += blocksum(x)·offset (see nbits-nodes.ts). The values are the GGUF's own: no
 * rounding happens here except float32 storage of products of an f16 and a ≤ 8-bit integer (exact) and of
 * the offsets (one f32 rounding).
 *
 *   type   block  bytes  sub  bits  q (signed)            scale      offset
 *   Q4_0     32    18    32    4    nibble − 8            d          0
 *   Q4_1     32    20    32    4    nibble − 8            d          8d + m
 *   Q8_0     32    34    32    8    int8                  d          0
 *   Q5_0     32    22    32    8    5-bit − 16            d          0
 *   Q5_1     32    24    32    8    5-bit − 16            d          16d + m
 *   Q4_K    256   144    32    4    nibble − 8            d·sc_j     8·d·sc_j − dmin·m_j
 *   Q6_K    256   210    16    8    6-bit − 32            d·sc_j     0
 *
 * 4-bit types can be widened to 8 bits (`bits: 8`, exact); 8-bit types cannot be narrowed (that would be
 * re-quantizing), so they stay 8-bit. Layouts follow ggml-quants.c (dequantize_row_*).
 * GGUF tensors are [N rows][K] with K contiguous — the same row-major order as MatMulNBits' B [N, K/sub, blob].
 */
import { readHalf } from './half.ts';

export type NBitsSourceType = 'Q4_0' | 'Q4_1' | 'Q8_0' | 'Q5_0' | 'Q5_1' | 'Q4_K' | 'Q6_K';

interface TypeInfo {
  /** Weights per GGUF block. */
  qk: number;
  bytes: number;
  /** MatMulNBits block size (the GGUF sub-block with its own scale). */
  sub: number;
  bits: 4 | 8;
  hasOffset: boolean;
}

export const NBITS_TYPES: Readonly<Record<NBitsSourceType, TypeInfo>> = {
  Q4_0: { qk: 32, bytes: 18, sub: 32, bits: 4, hasOffset: false },
  Q4_1: { qk: 32, bytes: 20, sub: 32, bits: 4, hasOffset: true },
  Q8_0: { qk: 32, bytes: 34, sub: 32, bits: 8, hasOffset: false },
  Q5_0: { qk: 32, bytes: 22, sub: 32, bits: 8, hasOffset: false },
  Q5_1: { qk: 32, bytes: 24, sub: 32, bits: 8, hasOffset: true },
  Q4_K: { qk: 256, bytes: 144, sub: 32, bits: 4, hasOffset: true },
  Q6_K: { qk: 256, bytes: 210, sub: 16, bits: 8, hasOffset: false },
};

export function isNBitsSource(type: string): type is NBitsSourceType {
  return Object.hasOwn(NBITS_TYPES, type);
}

/** MatMulNBits operands for one linear layer y = x·Wᵀ, W [N, K]. */
export interface NBitsWeight {
  K: number;
  N: number;
  bits: 4 | 8;
  blockSize: number;
  /** B: uint8 [N, K/blockSize, blockSize·bits/8]; 4-bit: element 2i in the low nibble of byte i. */
  data: Uint8Array;
  /** float32 [N · K/blockSize], row n's blocks contiguous. */
  scales: Float32Array;
  /** float32 [K/blockSize, N] (transposed for the correction MatMul), or undefined when all zero. */
  offsets?: Float32Array;
  /** The GGUF type it came from (for reports). */
  source: NBitsSourceType;
}

/** Signed q, scale and offset of every `sub`-block inside one GGUF block (the decoders below fill these). */
interface BlockOut {
  q: Int16Array;
  scale: Float64Array;
  offset: Float64Array;
}

type Decoder = (raw: Uint8Array, o: number, out: BlockOut) => void;

const DECODERS: Record<NBitsSourceType, Decoder> = {
  Q4_0(raw, o, { q, scale, offset }) {
    scale[0] = readHalf(raw, o);
    offset[0] = 0;
    nibbles32(raw, o + 2, q, 0);
  },
  Q4_1(raw, o, { q, scale, offset }) {
    const d = readHalf(raw, o);
    scale[0] = d;
    offset[0] = 8 * d + readHalf(raw, o + 2); // d·q + m = d·(q − 8) + (8d + m)
    nibbles32(raw, o + 4, q, 0);
  },
  Q8_0(raw, o, { q, scale, offset }) {
    scale[0] = readHalf(raw, o);
    offset[0] = 0;
    for (let j = 0; j < 32; j++) q[j] = (raw[o + 2 + j]! << 24) >> 24;
  },
  Q5_0(raw, o, { q, scale, offset }) {
    scale[0] = readHalf(raw, o);
    offset[0] = 0;
    fiveBit32(raw, o + 2, q);
  },
  Q5_1(raw, o, { q, scale, offset }) {
    const d = readHalf(raw, o);
    scale[0] = d;
    offset[0] = 16 * d + readHalf(raw, o + 2); // d·q + m = d·(q − 16) + (16d + m)
    fiveBit32(raw, o + 4, q);
  },
  Q4_K(raw, o, { q, scale, offset }) {
    // d f16, dmin f16, scales[12] (8 six-bit scales and 8 six-bit mins), qs[128]: 4 chunks of 64 weights,
    // chunk c's first 32 = low nibbles of qs[32c..32c+31], next 32 = high nibbles.
    const d = readHalf(raw, o);
    const dmin = readHalf(raw, o + 2);
    const s = o + 4;
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMinK4(raw, s, j);
      scale[j] = d * sc;
      offset[j] = 8 * d * sc - dmin * m; // d·sc·q − dmin·m = d·sc·(q − 8) + (8·d·sc − dmin·m)
    }
    const qs = o + 16;
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const b = raw[qs + 32 * c + l]!;
        q[64 * c + l] = (b & 15) - 8;
        q[64 * c + 32 + l] = (b >> 4) - 8;
      }
    }
  },
  Q6_K(raw, o, { q, scale, offset }) {
    // ql[128], qh[64], scales int8[16], d f16; two halves of 128 weights, each from 64 ql + 32 qh bytes.
    const d = readHalf(raw, o + 208);
    for (let j = 0; j < 16; j++) {
      scale[j] = d * ((raw[o + 192 + j]! << 24) >> 24);
      offset[j] = 0;
    }
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h;
      const qh = o + 128 + 32 * h;
      const y = 128 * h;
      for (let l = 0; l < 32; l++) {
        const hb = raw[qh + l]!;
        q[y + l] = ((raw[ql + l]! & 15) | ((hb & 3) << 4)) - 32;
        q[y + l + 32] = ((raw[ql + l + 32]! & 15) | (((hb >> 2) & 3) << 4)) - 32;
        q[y + l + 64] = ((raw[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        q[y + l + 96] = ((raw[ql + l + 32]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
      }
    }
  },
};

/** Q4_0/Q4_1 layout: weight j < 16 is the low nibble of qs[j], weight j + 16 its high nibble; centred at 8. */
function nibbles32(raw: Uint8Array, qs: number, q: Int16Array, at: number): void {
  for (let j = 0; j < 16; j++) {
    const b = raw[qs + j]!;
    q[at + j] = (b & 15) - 8;
    q[at + j + 16] = (b >> 4) - 8;
  }
}

/** Q5_0/Q5_1: qh (u32 LE) holds the fifth bit of weight j at bit j; qs as in Q4_0; centred at 16. */
function fiveBit32(raw: Uint8Array, o: number, q: Int16Array): void {
  const qh = (raw[o]! | (raw[o + 1]! << 8) | (raw[o + 2]! << 16) | (raw[o + 3]! << 24)) >>> 0;
  for (let j = 0; j < 16; j++) {
    const b = raw[o + 4 + j]!;
    q[j] = ((b & 15) | (((qh >>> j) & 1) << 4)) - 16;
    q[j + 16] = ((b >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16;
  }
}

/** ggml's get_scale_min_k4: 6-bit scale and min of sub-block j from the 12 packed bytes at `s`. */
function scaleMinK4(raw: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [raw[s + j]! & 63, raw[s + j + 4]! & 63];
  const sc = (raw[s + j + 4]! & 15) | ((raw[s + j - 4]! >> 6) << 4);
  const m = (raw[s + j + 4]! >> 4) | ((raw[s + j]! >> 6) << 4);
  return [sc, m];
}

export class NBitsPackError extends Error {}

/** Byte length of a GGUF tensor of `type` with K weights per row and N rows. */
export function nbitsSourceBytes(type: NBitsSourceType, K: number, N: number): number {
  const t = NBITS_TYPES[type];
  return (K / t.qk) * t.bytes * N;
}

/**
 * Repack one GGUF tensor (ne0 = K, ne1 = N; raw block bytes) as MatMulNBits operands.
 * `bits`: 4 keeps 4-bit types 4-bit; 8 widens them. 8-bit-only types ignore a request for 4.
 */
export function packNBits(type: NBitsSourceType, raw: Uint8Array, K: number, N: number, bits?: 4 | 8): NBitsWeight {
  const t = NBITS_TYPES[type];
  if (!Number.isInteger(K) || !Number.isInteger(N) || K <= 0 || N <= 0 || K % t.qk !== 0) {
    throw new NBitsPackError(`${type} tensor [${N}, ${K}]: K must be a positive multiple of ${t.qk}`);
  }
  if (raw.byteLength !== nbitsSourceBytes(type, K, N)) {
    throw new NBitsPackError(`${type} tensor [${N}, ${K}]: ${raw.byteLength} bytes, expected ${nbitsSourceBytes(type, K, N)}`);
  }
  const outBits: 4 | 8 = t.bits === 8 ? 8 : (bits ?? 4);
  const zp = outBits === 4 ? 8 : 128;
  const sub = t.sub;
  const subsPerBlock = t.qk / sub;
  const blocksPerRow = K / t.qk;
  const nbRow = K / sub; // MatMulNBits blocks per row
  const blob = (sub * outBits) / 8;
  const data = new Uint8Array(N * nbRow * blob);
  const scales = new Float32Array(N * nbRow);
  const offsets = t.hasOffset ? new Float32Array(nbRow * N) : undefined;
  const out: BlockOut = { q: new Int16Array(t.qk), scale: new Float64Array(subsPerBlock), offset: new Float64Array(subsPerBlock) };
  const decode = DECODERS[type];
  for (let n = 0; n < N; n++) {
    for (let blk = 0; blk < blocksPerRow; blk++) {
      decode(raw, (n * blocksPerRow + blk) * t.bytes, out);
      for (let s = 0; s < subsPerBlock; s++) {
        const b = blk * subsPerBlock + s; // MatMulNBits block index within row n
        scales[n * nbRow + b] = out.scale[s]!;
        if (offsets) offsets[b * N + n] = out.offset[s]!;
        const dst = (n * nbRow + b) * blob;
        const q0 = s * sub;
        if (outBits === 8) {
          for (let j = 0; j < sub; j++) data[dst + j] = out.q[q0 + j]! + zp;
        } else {
          for (let i = 0; i < sub / 2; i++) data[dst + i] = (out.q[q0 + 2 * i]! + zp) | ((out.q[q0 + 2 * i + 1]! + zp) << 4);
        }
      }
    }
  }
  return { K, N, bits: outBits, blockSize: sub, data, scales, ...(offsets ? { offsets } : {}), source: type };
}

/**
 * What the MatMulNBits operands mean, as a dense W [N, K] float32 (float64 arithmetic, then rounded): the
 * exact inverse of the packing, for tests and for writing an f32 graph from the same values.
 */
export function unpackNBits(w: NBitsWeight): Float32Array {
  const { K, N, bits, blockSize: sub } = w;
  const nbRow = K / sub;
  const blob = (sub * bits) / 8;
  const zp = bits === 4 ? 8 : 128;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nbRow; b++) {
      const sc = w.scales[n * nbRow + b]!;
      const off = w.offsets ? w.offsets[b * N + n]! : 0;
      const src = (n * nbRow + b) * blob;
      for (let j = 0; j < sub; j++) {
        const u = bits === 8 ? w.data[src + j]! : j & 1 ? w.data[src + (j >> 1)]! >> 4 : w.data[src + (j >> 1)]! & 15;
        out[n * K + b * sub + j] = sc * (u - zp) + off;
      }
    }
  }
  return out;
}

/**
 * An 8-bit weight as two exact 4-bit planes, so it runs on ORT's fast 4-bit kernels at accuracy_level 0
 * (8-bit MatMulNBits is fast only at level 4, whose int8 activations changed SmolLM2's answers):
 *
 *     u = 16·hi + lo  (hi, lo ∈ [0, 15])   ⇒   s·(u − 128) = 16s·(hi − 8) + s·(lo − 8) + 8s
 *
 * `hi` gets scales 16s, `lo` scales s and the offsets (8s plus the weight's own). No value is rounded except
 * the f32 sum 8s + offset. The two planes hold as many bytes as the 8-bit weight.
 */
export function splitTo4Bit(w: NBitsWeight): { hi: NBitsWeight; lo: NBitsWeight } {
  if (w.bits !== 8) throw new NBitsPackError('only 8-bit weights are split into 4-bit planes');
  const { K, N, blockSize: sub } = w;
  const nbRow = K / sub;
  const hiData = new Uint8Array(w.data.length / 2);
  const loData = new Uint8Array(w.data.length / 2);
  for (let i = 0; i < hiData.length; i++) {
    const a = w.data[2 * i]!;
    const b = w.data[2 * i + 1]!;
    hiData[i] = (a >> 4) | (b & 0xf0);
    loData[i] = (a & 15) | ((b & 15) << 4);
  }
  const hiScales = Float32Array.from(w.scales, (s) => 16 * s);
  const offsets = new Float32Array(nbRow * N);
  for (let n = 0; n < N; n++) for (let b = 0; b < nbRow; b++) offsets[b * N + n] = 8 * w.scales[n * nbRow + b]! + (w.offsets ? w.offsets[b * N + n]! : 0);
  const base = { K, N, bits: 4 as const, blockSize: sub, source: w.source };
  return { hi: { ...base, data: hiData, scales: hiScales }, lo: { ...base, data: loData, scales: w.scales, offsets } };
}
