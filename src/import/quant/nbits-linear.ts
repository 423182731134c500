/**
 * `--weights q4 | q8` for the GGUF importer: the GGUF's own blocks become MatMulNBits operands
 * (nbits-pack.ts) — no re-quantization. What each source type becomes:
 *
 *   Q4_0, Q4_1, Q4_K        q4: 4-bit MatMulNBits (block 32; offsets of Q4_1/Q4_K as a blocksum correction)
 *                           q8: the same values widened to 8 bits (exact)
 *   Q8_0, Q5_0, Q5_1        8-bit MatMulNBits, block 32 (exact; there is no 4-bit form without re-quantizing)
 *   Q6_K                    8-bit MatMulNBits, block 16 (exact)
 *   F32, F16, BF16, others  float32 MatMul — the documented fallback (such files' other types are refused
 *                           earlier by the dequantizer, with the list of types it reads)
 *
 * Tied embeddings: the token table is stored once, as MatMulNBits' B for the head, and read for the lookup
 * by GatherBlockQuantized (8-bit tables: Q8_0/Q6_K/Q5_x, or 4-bit ones widened to 8 bits for the pair).
 */
import type { GgufFile, GgufTensorInfo } from '../../runtime/gguf/index.ts';
import type { TensorProto, NodeProto } from '../../runtime/graph/onnx.ts';
import { isNBitsSource, NBITS_TYPES, packNBits, type NBitsWeight } from './nbits-pack.ts';
import { NBitsEmitter, type AccuracyLevel } from './nbits-nodes.ts';

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

/** Quantized token tables already stored in a graph, by GGUF tensor name: a tied head reads the same bytes. */
const tables = new WeakMap<GraphSink, Map<string, { weight: NBitsWeight; names: { data: string; scales: string } }>>();

export function sharedTable(sink: GraphSink, tensor: string) {
  return tables.get(sink)?.get(tensor);
}

/**
 * Embedding lookup `ids → [b, s, d]` from a quantized GGUF token table (8-bit GatherBlockQuantized, 4-bit
 * tables widened), registered so the tied head shares it. Returns undefined when the table's type has no
 * MatMulNBits form (the caller keeps the float path).
 */
export function emitQuantizedEmbedding(sink: GraphSink, file: GgufFile, info: GgufTensorInfo, ids: string, scope: string, prefix: string): string | undefined {
  if (!packable(info)) return undefined;
  const weight = nbitsWeight(file, info, 8);
  const output = `${scope}/GatherBlockQuantized_output_0`;
  const names = emitterFor(sink).embedding({ scope, prefix, ids, output, weight });
  let m = tables.get(sink);
  if (!m) tables.set(sink, (m = new Map()));
  m.set(info.name, { weight, names });
  return output;
}

/** Import-time choice of MatMulNBits' compute precision (the runtime can override it: PATCHBAY_NBITS_ACCURACY). */
export const DEFAULT_IMPORT_ACCURACY: AccuracyLevel = 0;
