/**
 * The base model's token-embedding table, read from its ONNX initializers: what a generator's string
 * condition is embedded with (adapters/condition.ts).
 *
 * Found structurally, not by name: the `Gather` whose indices come from `input_ids` (directly or through
 * shape-only ops such as Reshape/Cast) and whose data is a 2-D float initializer. `axis = 0` means the table is
 * stored [vocab, d] (Llama's `embed_tokens`); `axis = 1` means [d, vocab] (GPT-2 exports tying wte to
 * `lm_head.weight` = wteᵀ). Either way `row(t)` is token t's embedding, [d].
 */
import { FLOAT, intAttr, tensorDims, toNumber, type ModelProto, type NodeProto, type TensorProto } from './onnx.ts';

export interface TokenEmbedding {
  vocab: number;
  dim: number;
  /** The initializer it came from, for messages. */
  source: string;
  /** Token `id`'s embedding, [dim] (a fresh copy). */
  row(id: number): Float32Array;
}

/** Ops that only reshape or retype the ids on their way from `input_ids` to the embedding Gather. */
const PASS_THROUGH = new Set(['Reshape', 'Cast', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity']);

export class TokenEmbeddingError extends Error {
  override readonly name = 'TokenEmbeddingError';
}

export function findTokenEmbedding(model: ModelProto, idsInput = 'input_ids'): TokenEmbedding {
  const graph = model.graph;
  const inits = new Map<string, TensorProto>();
  for (const t of graph?.initializer ?? []) if (t.name) inits.set(t.name, t);
  // Tensors carrying the ids: input_ids and whatever PASS_THROUGH ops make of it (first input only).
  const carriesIds = new Set([idsInput]);
  const nodes: NodeProto[] = graph?.node ?? [];
  for (const n of nodes) {
    if (PASS_THROUGH.has(n.opType ?? '') && carriesIds.has(n.input?.[0] ?? '')) for (const o of n.output ?? []) carriesIds.add(o);
  }
  for (const n of nodes) {
    if (n.opType !== 'Gather') continue;
    const [data, indices] = n.input ?? [];
    const table = data ? inits.get(data) : undefined;
    if (!table || !indices || !carriesIds.has(indices) || table.dataType !== FLOAT || tensorDims(table).length !== 2) continue;
    const axis = intAttr(n, 'axis', 0);
    if (axis !== 0 && axis !== 1) continue;
    return embeddingOf(table, axis);
  }
  throw new TokenEmbeddingError(`the base graph has no token-embedding Gather on ${idsInput} with a 2-D float initializer`);
}

function embeddingOf(t: TensorProto, axis: 0 | 1): TokenEmbedding {
  const [rows, cols] = tensorDims(t) as [number, number];
  const values = floatData(t, rows * cols);
  const [vocab, dim] = axis === 0 ? [rows, cols] : [cols, rows];
  return {
    vocab,
    dim,
    source: t.name ?? '?',
    row(id) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new TokenEmbeddingError(`token id ${id} is outside the vocabulary (${vocab})`);
      if (axis === 0) return values.slice(id * dim, (id + 1) * dim);
      const out = new Float32Array(dim);
      for (let j = 0; j < dim; j++) out[j] = values[j * vocab + id]!;
      return out;
    },
  };
}

/** An initializer's float32 values: `raw_data` (little-endian) or `float_data`; external data is refused. */
function floatData(t: TensorProto, count: number): Float32Array {
  if (t.dataLocation === 1) throw new TokenEmbeddingError(`initializer ${t.name} is stored as external data, which is not supported`);
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    if (raw.length !== count * 4) throw new TokenEmbeddingError(`initializer ${t.name} has ${raw.length} bytes, expected ${count * 4}`);
    const copy = new Uint8Array(raw); // aligned copy: raw_data may start at any byte offset of the decode buffer
    return new Float32Array(copy.buffer, 0, count);
  }
  const fd = t.floatData ?? [];
  if (fd.length !== count) throw new TokenEmbeddingError(`initializer ${t.name} has ${fd.length} values, expected ${count}`);
  return Float32Array.from(fd, (v) => toNumber(v));
}
