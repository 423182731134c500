/**
 * A request's `condition` → the generator's input vector c [condition_dim], and its cache identity.
 *
 * - number[]: used as given; it must have exactly condition_dim finite entries.
 * - string: embedded the way the manifest says (`string_condition`), today `mean_token_embedding`:
 *       t_1..t_n = tokenizer.encode(case(text))             (the base model's own tokenizer, no specials)
 *       e = (1/n)·Σ_k E[t_k]                                  E: the base's token-embedding table, [vocab, d]
 *       c = W·e + bias   (W [d_c, d], projection file)  or  c = e  (no projection: d_c = d)
 *   accumulated in float64, stored float32.
 * The cache key hashes the float32 bytes of c, so a string and the vector it embeds to share one entry.
 */
import { createHash } from 'node:crypto';
import { badRequest, type PatchbayError } from '../errors.ts';
import type { TokenEmbedding } from '../runtime/graph/token-embedding.ts';
import type { StringConditionSpec } from './generator-manifest.ts';

/** What string embedding needs from the served base model. */
export interface StringEmbeddingSource {
  encode(text: string): number[];
  /** Loaded lazily (it decodes the base ONNX file once). */
  embedding(): Promise<TokenEmbedding>;
}

export interface Projection {
  /** [outDim, inDim] row-major. */
  weight: Float32Array;
  bias?: Float32Array;
  outDim: number;
  inDim: number;
}

const badCondition = (message: string, code = 'invalid_condition'): PatchbayError => badRequest(message, 'condition', code);

/** Checks a vector condition: the generator's dimension, every entry a finite number. */
export function vectorCondition(values: readonly unknown[], dim: number, generatorId: string): Float32Array {
  if (values.length !== dim) {
    throw badCondition(`generator ${generatorId} takes a condition of ${dim} numbers (or a string); got ${values.length} numbers`, 'condition_dimension_mismatch');
  }
  const out = new Float32Array(dim);
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw badCondition(`condition[${i}] must be a finite number, got ${JSON.stringify(v) ?? String(v)}`);
    out[i] = v;
    // A finite float64 can still overflow float32 (|v| > 3.4e38); the generator would see Infinity.
    if (!Number.isFinite(out[i]!)) throw badCondition(`condition[${i}] = ${v} is outside the float32 range`);
  });
  return out;
}

export async function embedString(
  text: string,
  spec: StringConditionSpec,
  source: StringEmbeddingSource,
  projection: Projection | undefined,
  generatorId: string,
): Promise<Float32Array> {
  const folded = spec.case === 'upper' ? text.toUpperCase() : spec.case === 'lower' ? text.toLowerCase() : text;
  const ids = source.encode(folded);
  if (ids.length === 0) throw badCondition(`condition string ${JSON.stringify(text)} has no tokens to embed`);
  const table = await source.embedding();
  const mean = new Float64Array(table.dim);
  for (const id of ids) {
    const row = table.row(id);
    for (let j = 0; j < table.dim; j++) mean[j]! += row[j]!;
  }
  for (let j = 0; j < table.dim; j++) mean[j]! /= ids.length;
  if (!projection) return Float32Array.from(mean);
  const { weight, bias, outDim, inDim } = projection;
  if (inDim !== table.dim) {
    throw badRequest(`generator ${generatorId}: its projection takes ${inDim}-wide embeddings but the base model's are ${table.dim} wide`, 'model', 'generator_base_mismatch');
  }
  const c = new Float32Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let s = bias ? bias[o]! : 0;
    for (let j = 0; j < inDim; j++) s += weight[o * inDim + j]! * mean[j]!;
    c[o] = s;
  }
  return c;
}

/** Identity of a condition vector in the factor cache: sha256 of its float32 bytes, 16 hex digits. */
export function conditionHash(c: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(c.buffer, c.byteOffset, c.byteLength)).digest('hex').slice(0, 16);
}
