/**
 * `--weights q4 | q8` for the GGUF importer: the GGUF's own blocks become MatMulNBits operands
 * (nbits-pack.ts) — no re-quantization. What each source type becomes:
 *
 *   Q4_0, Q4_1, Q4_K        q4: 4-bit MatMulNBits (block 32; offsets of Q4_1/Q4_K as a blocksum correction)
 *                           q8: the same values widened to 8 bits (exact)
 *   Q8_0, Q5_0, Q5_1        q4: two 4-bit planes, block 32 (hi·16 + lo, exact); q8: 8-bit MatMulNBits
 *   Q6_K                    the same with block 16
 *   F32, F16, BF16, others  float32 MatMul — the documented fallback (such files' other types are refused
 *                           earlier by the dequantizer, with the list of types it reads)
 *
 * In q4 mode 8-bit sources are stored as two exact 4-bit planes (nbits-pack.ts splitTo4Bit) so that every
 * layer runs on ORT's 4-bit kernels at accuracy_level 0.
 *
 * Tied embeddings: the token table is stored once, as MatMulNBits' B (one or two planes) for the head, and
 * read for the lookup by GatherBlockQuantized on the same initializers.
 */
import type { GgufFile, GgufTensorInfo } from '../../runtime/gguf/index.ts';
import type { TensorProto, NodeProto } from '../../runtime/graph/onnx.ts';
import { isNBitsSource, NBITS_TYPES, packNBits, splitTo4Bit, type NBitsWeight } from './nbits-pack.ts';
import { NBitsEmitter, type AccuracyLevel, type SharedPlanes } from './nbits-nodes.ts';

export interface GraphSink {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

/** One emitter per graph (it shares blocksums between layers reading the same input). */
const emitters = new WeakMap<GraphSink, NBitsEmitter>();
export function emitterFor(sink: GraphSink): NBitsEmitter {
  let e = emitters.get(sink);
  if (!e) emitters.set(sink, (e = new NBitsEmitter(sink)));
  return e;
}

/** Whether this GGUF tensor maps onto MatMulNBits (else the importer keeps it float32). */
export function packable(info: GgufTensorInfo): boolean {
  return info.type !== undefined && isNBitsSource(info.type.name) && info.dims.length === 2;
}

/**
 * The tensor's MatMulNBits operands, rows un-permuted for llama.cpp's Q/K order when asked: whole rows move
 * and blocks never cross a row, so the permutation is applied to the raw block bytes before packing.
 */
export function nbitsWeight(file: GgufFile, info: GgufTensorInfo, bits: 4 | 8, unpermuteHeads?: number): NBitsWeight {
  const type = info.type!.name;
  if (!isNBitsSource(type)) throw new Error(`${info.name}: ${type} has no MatMulNBits form`);
  const [K, N] = info.dims as [number, number];
  let raw = file.readTensorBytes(info);
  if (unpermuteHeads) raw = unpermuteRowBytes(raw, N, (K / NBITS_TYPES[type].qk) * NBITS_TYPES[type].bytes, unpermuteHeads);
  return packNBits(type, raw, K, N, bits);
}

/**
 * llama.cpp's Q/K row order → HF's, on whole rows of bytes: GGUF row h·dim + 2i + j is HF row
 * h·dim + j·dim/2 + i (the same map as runtime/gguf/llama-permute.ts unpermuteRows, which works on floats).
 */
export function unpermuteRowBytes(raw: Uint8Array, rows: number, rowBytes: number, heads: number): Uint8Array {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0) throw new Error(`cannot un-permute ${rows} rows over ${heads} heads`);
  const dim = rows / heads;
  const half = dim / 2;
  const out = new Uint8Array(raw.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * dim + 2 * i + j;
        const to = h * dim + j * half + i;
        out.set(raw.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}

/** A layer's operands: one MatMulNBits weight, or (q4 mode, 8-bit source) two exact 4-bit planes. */
export interface Planes {
  weight: NBitsWeight;
  lo?: NBitsWeight;
}

/**
 * `--weights q4`: 4-bit types stay 4-bit, 8-bit types (Q8_0, Q5_x, Q6_K) become two 4-bit planes
 * (splitTo4Bit) so every layer runs on the fast, exact 4-bit kernels. `--weights q8`: everything 8-bit.
 */
export function nbitsPlanes(file: GgufFile, info: GgufTensorInfo, mode: 'q4' | 'q8', unpermuteHeads?: number): Planes {
  const w = nbitsWeight(file, info, mode === 'q8' ? 8 : 4, unpermuteHeads);
  if (mode === 'q8' || w.bits === 4) return { weight: w };
  const { hi, lo } = splitTo4Bit(w);
  return { weight: hi, lo };
}

/** Quantized token tables already stored in a graph, by GGUF tensor name: a tied head reads the same bytes. */
const tables = new WeakMap<GraphSink, Map<string, { planes: Planes; names: SharedPlanes }>>();

export function sharedTable(sink: GraphSink, tensor: string) {
  return tables.get(sink)?.get(tensor);
}

/**
 * Embedding lookup `ids → [b, s, d]` from a quantized GGUF token table (8-bit GatherBlockQuantized, 4-bit
 * tables widened), registered so the tied head shares it. Returns undefined when the table's type has no
 * MatMulNBits form (the caller keeps the float path).
 */
export function emitQuantizedEmbedding(sink: GraphSink, file: GgufFile, info: GgufTensorInfo, ids: string, scope: string, prefix: string, mode: 'q4' | 'q8'): string | undefined {
  if (!packable(info)) return undefined;
  const planes = nbitsPlanes(file, info, mode);
  const output = `${scope}/GatherBlockQuantized_output_0`;
  const names = emitterFor(sink).embedding({ scope, prefix, ids, output, ...planes });
  let m = tables.get(sink);
  if (!m) tables.set(sink, (m = new Map()));
  m.set(info.name, { planes, names });
  return output;
}

/**
 * Import-time choice of MatMulNBits' compute precision (the runtime can override it: PATCHBAY_NBITS_ACCURACY).
 * `auto` = per layer: 0 (float32 compute) for 4-bit layers, 4 (int8 activations) for 8-bit ones. Measured
 * with ORT 1.30 CPU (bench/nbits-ops.ts, BENCHMARKS.md): 4-bit kernels are as fast at level 0 as at 4 and
 * exact there, while 8-bit MatMulNBits at level 0 dequantizes the whole matrix on every run (the tied
 * SmolLM2 head: ~1.3 s per token at level 0, ~30 ms at level 4).
 */
export type ImportAccuracy = AccuracyLevel | 'auto';
export const DEFAULT_IMPORT_ACCURACY: ImportAccuracy = 'auto';

export function levelFor(choice: ImportAccuracy, bits: 4 | 8): AccuracyLevel {
  return choice === 'auto' ? (bits === 8 ? 4 : 0) : choice;
}
