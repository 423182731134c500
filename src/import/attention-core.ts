/**
 * The attention core of one imported Llama layer: from rotated q [B, H, S, hd] and k, v [B, KV, S, hd] to
 * the merged context [B, S, H·hd] that o_proj reads. Three forms, chosen at import (`--attention`); the
 * projections around them (q/k/v/o, where adapters attach) are the same in all three.
 *
 *  - `concat` (the ONNX contract of tools/README.md): present = Concat(past, new) is a graph output, the
 *    keys/values are repeated H/KV times (Expand) for the products. Every decode step copies the cache
 *    inside ORT, and onnxruntime-node copies each output into a new JS buffer again.
 *  - `append` (default): the cache belongs to the runtime (runtime/slot-kv.ts): fixed-capacity buffers
 *    [B, KV, C, hd] fed as `past_key_values.*` and only *read* here; the step's own keys/values are the
 *    outputs `new_key_values.*` [B, KV, S, hd], which the runtime writes into its buffers (S columns per
 *    row). No per-step copy of the cache anywhere. Grouped queries instead of repeated keys:
 *        q_g = q reshaped [B, KV, G·S, hd]  (G = H/KV; head h uses KV head ⌊h/G⌋, so the heads of a group
 *                                            are contiguous)
 *        s   = [q_g·pastᵀ | q_g·newᵀ] · hd^-½                   [B, KV, G·S, C + S] → [B, H, S, C + S]
 *        p   = softmax(mask(s)),  ctx = p[..., :C]·past_v + p[..., C:]·new_v
 *    The mask is the concat graph's (k ≤ P + j and attention_mask = 1, here P = C), so masked columns get
 *    float32 min and an exact 0 after softmax: logits equal the concat graph's up to summation order.
 *  - `gqa`: ORT's com.microsoft.GroupQueryAttention with past and present meant to be bound to one buffer.
 *    ORT's CPU kernel then writes the new column in place, but onnxruntime-node 1.30 still copies every
 *    fetched output (the whole C-wide present) into a new JS ArrayBuffer per step (README, "KV cache");
 *    kept so bench/kv-context.ts measures it side by side. The runtime does not serve it.
 */
import { FLOAT } from '../runtime/graph/onnx.ts';
import type { GraphBuilder } from './graph-builder.ts';
import { MS_DOMAIN } from './quant/nbits-nodes.ts';

export const ATTENTION_MODES = ['append', 'concat', 'gqa'] as const;
export type AttentionMode = (typeof ATTENTION_MODES)[number];
export const DEFAULT_ATTENTION: AttentionMode = 'append';

/** Graph outputs of the `append` form: the step's keys/values, [B, KV, S, hd]. */
export function newKvName(layer: number, kind: 'key' | 'value'): string {
  return `new_key_values.${layer}.${kind}`;
}

const INT32 = 6;
const NEG = -3.4028234663852886e38; // torch.finfo(torch.float32).min, as the concat graph

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** Declares the mode's cache inputs/outputs (and GQA's length inputs) on the builder. */
export function declareCacheIo(b: GraphBuilder, mode: AttentionMode, layers: number, s: AttentionShape): void {
  const { kvHeads: KV, headDim: hd } = s;
  if (mode === 'gqa') {
    b.input('seqlens_k', INT32, ['batch_size']);
    b.input('total_sequence_length', INT32, []);
  }
  const pastLen = mode === 'concat' ? 'past_sequence_length' : 'cache_capacity';
  for (let i = 0; i < layers; i++) {
    for (const kv of ['key', 'value']) b.input(`past_key_values.${i}.${kv}`, FLOAT, ['batch_size', KV, pastLen, hd]);
  }
}

export function declareCacheOutputs(b: GraphBuilder, mode: AttentionMode, layers: number, s: AttentionShape): void {
  const { kvHeads: KV, headDim: hd } = s;
  for (let i = 0; i < layers; i++) {
    for (const kv of ['key', 'value'] as const) {
      if (mode === 'append') b.output(newKvName(i, kv), FLOAT, ['batch_size', KV, 'sequence_length', hd]);
      else b.output(`present.${i}.${kv}`, FLOAT, ['batch_size', KV, mode === 'gqa' ? 'cache_capacity' : 'total_sequence_length', hd]);
    }
  }
}

/** Constants shared by every layer's core, created on first use (ORT warns about unused initializers). */
export interface CoreConsts {
  shapeCtx: string;
  expandKv: string;
  shapeRep: string;
  shapeGroups: string;
  shapeHeads: string;
  shapeGroupsT: string;
  shapeBshd: string;
  shapeBshdKv: string;
  axis2: string;
  axis3: string;
  zero: string;
  end: string;
  /** C, the cache width fed this step ([1] int64, from past_key_values.0.key), for `append`. */
  capacity: string;
  scale: string;
  neg: string;
}

export function coreConsts(b: GraphBuilder, s: AttentionShape): CoreConsts {
  const { heads: H, kvHeads: KV, headDim: hd } = s;
  const make: { [K in keyof CoreConsts]: () => string } = {
    shapeCtx: () => b.int64Const([0, 0, H * hd]),
    expandKv: () => b.int64Const([1, 1, H / KV, 1, 1]),
    shapeRep: () => b.int64Const([0, H, -1, hd]),
    shapeGroups: () => b.int64Const([0, KV, -1, hd]),
    shapeHeads: () => b.int64Const([0, H, -1, 0]),
    shapeGroupsT: () => b.int64Const([0, KV, -1, 0]),
    shapeBshd: () => b.int64Const([0, 0, H * hd]),
    shapeBshdKv: () => b.int64Const([0, 0, KV * hd]),
    axis2: () => b.int64Const([2]),
    axis3: () => b.int64Const([3]),
    zero: () => b.int64Const([0]),
    end: () => b.int64Const([Number.MAX_SAFE_INTEGER]),
    capacity: () => b.op1('/model/cache', 'Slice', [b.op1('/model/cache', 'Shape', ['past_key_values.0.key']), b.int64Const([2]), b.int64Const([3])]),
    scale: () => b.floatConst([hd ** -0.5], []),
    neg: () => b.floatConst([NEG], []),
  };
  const made = new Map<string, string>();
  return new Proxy({} as CoreConsts, {
    get: (_, key: keyof CoreConsts) => {
      if (!made.has(key)) made.set(key, make[key]());
      return made.get(key)!;
    },
  });
}

/**
 * One layer's core. `q` [B, H, S, hd], `k`/`v` [B, KV, S, hd] (q, k rotated), `allowed` [B, 1, S, T] bool
 * (T = past width + S; unused by `gqa`). Returns the merged context [B, S, H·hd].
 */
export function attentionCore(
  b: GraphBuilder,
  mode: AttentionMode,
  scope: string,
  layer: number,
  s: AttentionShape,
  c: CoreConsts,
  q: string,
  k: string,
  v: string,
  allowed: string,
): string {
  const A = scope;
  const past = (kind: string) => `past_key_values.${layer}.${kind}`;
  const merge = (ctx: string) => b.op1(A, 'Reshape', [b.op1(A, 'Transpose', [ctx], { perm: [0, 2, 1, 3] }), c.shapeCtx]);
  if (mode === 'concat') {
    const kAll = b.op1(A, 'Concat', [past('key'), k], { axis: 2 }, { outputName: `present.${layer}.key` });
    const vAll = b.op1(A, 'Concat', [past('value'), v], { axis: 2 }, { outputName: `present.${layer}.value` });
    // GQA: repeat each KV head H/KV times for the products only; the cache keeps them un-repeated.
    const repeat = (y: string) =>
      s.heads === s.kvHeads ? y : b.op1(A, 'Reshape', [b.op1(A, 'Expand', [b.op1(A, 'Unsqueeze', [y, c.axis2]), c.expandKv]), c.shapeRep]);
    const kT = b.op1(A, 'Transpose', [repeat(kAll)], { perm: [0, 1, 3, 2] });
    const scores = b.op1(A, 'Mul', [b.op1(A, 'MatMul', [q, kT]), c.scale]);
    const probs = b.op1(A, 'Softmax', [b.op1(A, 'Where', [allowed, scores, c.neg])], { axis: -1 });
    return merge(b.op1(A, 'MatMul', [probs, repeat(vAll)]));
  }
  if (mode === 'gqa') {
    // GQA reads q/k/v as [B, S, N·hd]; rotation stays outside (the concat graph's exact RoPE).
    const bshd = (y: string, to: string) => b.op1(A, 'Reshape', [b.op1(A, 'Transpose', [y], { perm: [0, 2, 1, 3] }), to]);
    const [out] = b.op(A, 'GroupQueryAttention', [bshd(q, c.shapeBshd), bshd(k, c.shapeBshdKv), bshd(v, c.shapeBshdKv), past('key'), past('value'), 'seqlens_k', 'total_sequence_length'], {
      num_heads: s.heads,
      kv_num_heads: s.kvHeads,
    }, { outputs: 3, outputName: `${A}/GroupQueryAttention_output_0` });
    const node = b.nodes[b.nodes.length - 1]!;
    node.domain = MS_DOMAIN;
    node.output = [out!, `present.${layer}.key`, `present.${layer}.value`];
    return out!;
  }
  // append: the past is only read; the new keys/values are the outputs the runtime appends.
  b.op1(A, 'Identity', [k], {}, { outputName: newKvName(layer, 'key') });
  b.op1(A, 'Identity', [v], {}, { outputName: newKvName(layer, 'value') });
  const qg = b.op1(A, 'Reshape', [q, c.shapeGroups]); // [B, KV, G·S, hd]
  const kT = (y: string) => b.op1(A, 'Transpose', [y], { perm: [0, 1, 3, 2] });
  const sPast = b.op1(A, 'MatMul', [qg, kT(past('key'))]); // [B, KV, G·S, C]
  const sNew = b.op1(A, 'MatMul', [qg, kT(k)]); // [B, KV, G·S, S]
  const scores = b.op1(A, 'Mul', [b.op1(A, 'Reshape', [b.op1(A, 'Concat', [sPast, sNew], { axis: -1 }), c.shapeHeads]), c.scale]); // [B, H, S, T]
  // Back to groups, [B, KV, G·S, T]; the past's columns and the step's own are read from two slices.
  const probs = b.op1(A, 'Reshape', [b.op1(A, 'Softmax', [b.op1(A, 'Where', [allowed, scores, c.neg])], { axis: -1 }), c.shapeGroupsT]);
  const pPast = b.op1(A, 'Slice', [probs, c.zero, c.capacity, c.axis3]);
  const pNew = b.op1(A, 'Slice', [probs, c.capacity, c.end, c.axis3]);
  const ctx = b.op1(A, 'Add', [b.op1(A, 'MatMul', [pPast, past('value')]), b.op1(A, 'MatMul', [pNew, v])]); // [B, KV, G·S, hd]
  return merge(b.op1(A, 'Reshape', [ctx, c.shapeRep]));
}
