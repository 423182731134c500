/**
 * A tiny ONNX model that exercises every linear-layer form the rewrite handles, plus its forward pass
 * in plain TS (with optional per-row deltas) to check the rewritten graph against.
 *
 *   x [batch_size, seq, 8]
 *   → MatMul W1 [8,12] + Add b1         transformer.h.0.attn.c_attn   (bias Add)
 *   → Relu
 *   → MatMul W2 [12,8]                  transformer.h.0.attn.c_proj   (also a graph output `hidden`)
 *   → Reshape [-1, 8] → Gemm W3ᵀ (transB, W3 [10,8]) + b3   transformer.h.0.mlp.c_fc  (2-D Gemm)
 *   → Reshape [batch, seq, 10]
 *   → Add(b4, MatMul W4 [10,8])         transformer.h.0.mlp.c_proj   (bias first)
 *   → MatMul W5 [8,6]                   lm_head → `logits`
 */
import { FLOAT, encodeModel, int64Initializer, node, onnx, tensorValueInfo } from '../../src/runtime/graph/onnx.ts';

export const D = { x: 8, attn: 12, fc: 10, vocab: 6 };

export interface TinyWeights {
  w1: Float32Array; b1: Float32Array; w2: Float32Array;
  w3: Float32Array; b3: Float32Array; w4: Float32Array; b4: Float32Array; w5: Float32Array;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function randomArray(n: number, r: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * scale;
  return out;
}

export function tinyWeights(seed = 1): TinyWeights {
  const r = rng(seed);
  return {
    w1: randomArray(8 * 12, r), b1: randomArray(12, r), w2: randomArray(12 * 8, r),
    w3: randomArray(10 * 8, r), b3: randomArray(10, r), w4: randomArray(10 * 8, r), b4: randomArray(8, r),
    w5: randomArray(8 * 6, r),
  };
}

const f = (name: string, dims: number[], data: Float32Array) => ({ name, dataType: FLOAT, dims, floatData: [...data] });

export function tinyModel(w: TinyWeights = tinyWeights()): Uint8Array {
  const graph = {
    name: 'tiny',
    input: [tensorValueInfo('x', FLOAT, ['batch_size', 'seq', 8])],
    output: [tensorValueInfo('logits', FLOAT, ['batch_size', 'seq', 6]), tensorValueInfo('hidden', FLOAT, ['batch_size', 'seq', 8])],
    initializer: [
      f('W1', [8, 12], w.w1), f('b1', [12], w.b1), f('W2', [12, 8], w.w2), f('W3', [10, 8], w.w3), f('b3', [10], w.b3),
      f('W4', [10, 8], w.w4), f('b4', [8], w.b4), f('W5', [8, 6], w.w5),
      int64Initializer('flat', [-1, 8]), int64Initializer('s0', [0]), int64Initializer('s2', [2]), int64Initializer('ten', [10]),
    ],
    node: [
      node('MatMul', '/transformer/h.0/attn/c_attn/MatMul', ['x', 'W1'], ['t1']),
      node('Add', '/transformer/h.0/attn/c_attn/Add', ['t1', 'b1'], ['h1']),
      node('Relu', '/transformer/h.0/act/Relu', ['h1'], ['h2']),
      node('MatMul', '/transformer/h.0/attn/c_proj/MatMul', ['h2', 'W2'], ['hidden']),
      node('Reshape', '/r1', ['hidden', 'flat'], ['h4']),
      node('Gemm', '/transformer/h.0/mlp/c_fc/Gemm', ['h4', 'W3', 'b3'], ['h5'], [{ name: 'transB', type: 2, i: 1 }]),
      node('Shape', '/shape', ['x'], ['xs']),
      node('Slice', '/bs', ['xs', 's0', 's2'], ['bs']),
      node('Concat', '/cat', ['bs', 'ten'], ['shape3'], [{ name: 'axis', type: 2, i: 0 }]),
      node('Reshape', '/r2', ['h5', 'shape3'], ['h6']),
      node('MatMul', '/transformer/h.0/mlp/c_proj/MatMul', ['h6', 'W4'], ['t7']),
      node('Add', '/transformer/h.0/mlp/c_proj/Add', ['b4', 't7'], ['h7']),
      node('MatMul', '/lm_head/MatMul', ['h7', 'W5'], ['logits']),
    ],
  };
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }));
}

/** Per-row factors for one layer: a_i row-major [dIn, r_i], b_i [r_i, dOut]. */
export type RowFactors = { a: Float32Array; b: Float32Array; rank: number } | undefined;

/** out[t, :] = in[t, :] · W (+ bias), W row-major [k, n] (or [n, k] when transposed). */
function linear(x: Float32Array, rows: number, k: number, n: number, w: Float32Array, transposed = false, bias?: Float32Array): Float32Array {
  const out = new Float32Array(rows * n);
  for (let t = 0; t < rows; t++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      for (let i = 0; i < k; i++) s += x[t * k + i]! * (transposed ? w[j * k + i]! : w[i * n + j]!);
      out[t * n + j] = s;
    }
  }
  return out;
}

/** y[row i] += (x[row i] · a_i) · b_i for the rows of one batch entry. */
function addDelta(y: Float32Array, x: Float32Array, batch: number, seq: number, k: number, n: number, f: RowFactors[] | undefined) {
  if (!f) return;
  for (let i = 0; i < batch; i++) {
    const ri = f[i];
    if (!ri || ri.rank === 0) continue;
    const xs = x.subarray(i * seq * k, (i + 1) * seq * k);
    const d = linear(linear(xs, seq, k, ri.rank, ri.a), seq, ri.rank, n, ri.b);
    for (let t = 0; t < seq * n; t++) y[i * seq * n + t]! += d[t]!;
  }
}

export function tinyForward(w: TinyWeights, x: Float32Array, batch: number, seq: number, deltas: Map<string, RowFactors[]> = new Map()) {
  const T = batch * seq;
  const h1 = linear(x, T, 8, 12, w.w1, false, w.b1);
  addDelta(h1, x, batch, seq, 8, 12, deltas.get('transformer.h.0.attn.c_attn'));
  const h2 = h1.map((v) => Math.max(0, v));
  const hidden = linear(h2, T, 12, 8, w.w2);
  addDelta(hidden, h2, batch, seq, 12, 8, deltas.get('transformer.h.0.attn.c_proj'));
  const h5 = linear(hidden, T, 8, 10, w.w3, true, w.b3);
  addDelta(h5, hidden, batch, seq, 8, 10, deltas.get('transformer.h.0.mlp.c_fc'));
  const h7 = linear(h5, T, 10, 8, w.w4, false, w.b4);
  addDelta(h7, h5, batch, seq, 10, 8, deltas.get('transformer.h.0.mlp.c_proj'));
  const logits = linear(h7, T, 8, 6, w.w5);
  addDelta(logits, h7, batch, seq, 8, 6, deltas.get('lm_head'));
  return { logits, hidden };
}
