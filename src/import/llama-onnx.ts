/**
 * Build the Llama decoder ONNX graph from a GGUF file, mirroring tools/decoder_modules.py (LlamaExport)
 * and the project's ONNX contract (tools/README.md): inputs input_ids / attention_mask / position_ids /
 * past_key_values.{i}.key|value [B, kv_heads, P, hd]; outputs logits [B, S, V] and the cache outputs of the
 * chosen attention core (attention-core.ts: `present.{i}.*` = Concat(past, new) for `concat`, the step's
 * own `new_key_values.{i}.*` for `append`); query j sees key k iff k ≤ P + j and mask[b, k] = 1,
 * other scores replaced by float32 min (finite, so fully padded rows give garbage, not NaN).
 *
 *   x      = embed(input_ids)                                      [B, S, d]
 *   cos/sin = RoPE(position_ids · inv_freq), inv_freq_i = θ^(−2i/hd)   [B, 1, S, hd]
 *   per layer: h = RMSNorm(x); q,k,v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ; q,k ← q·cos + rotate_half(q)·sin
 *              x += o_proj(softmax(mask(q·kᵀ/√hd))·v);  x += down(silu(gate(h')) ⊙ up(h')), h' = RMSNorm(x)
 *   logits = RMSNorm(x)·W_lmᵀ
 * Every projection goes through emitLinear (emit-linear.ts).
 */
import { dequantizeTensor, type GgufFile } from '../runtime/gguf/index.ts';
import { FLOAT, INT64 } from '../runtime/graph/onnx.ts';
import { modulePath } from '../runtime/graph/module-path.ts';
import { emitLinear, type WeightsMode } from './emit-linear.ts';
import { emitQuantizedEmbedding, DEFAULT_IMPORT_ACCURACY } from './quant/nbits-linear.ts';
import { MS_DOMAIN } from './quant/nbits-nodes.ts';
import type { ImportAccuracy } from './quant/nbits-linear.ts';
import { GraphBuilder } from './graph-builder.ts';
import { emitRmsNorm } from './fused-norm.ts';
import { attentionCore, coreConsts, declareCacheIo, declareCacheOutputs, DEFAULT_ATTENTION, type AttentionMode } from './attention-core.ts';
import type { LlamaHparams } from './llama-hparams.ts';

export interface BuiltModel {
  bytes: Uint8Array;
  initializerBytes: number;
}

export interface BuildOptions {
  accuracyLevel?: ImportAccuracy;
  /** The attention core (attention-core.ts); default `append`. */
  attention?: AttentionMode;
}

export function buildLlamaOnnx(file: GgufFile, hp: LlamaHparams, mode: WeightsMode, opts: BuildOptions = {}): BuiltModel {
  const accuracyLevel = opts.accuracyLevel ?? DEFAULT_IMPORT_ACCURACY;
  const attention = opts.attention ?? DEFAULT_ATTENTION;
  const b = new GraphBuilder();
  const { heads: H, kvHeads: KV, headDim: hd, vocabSize: V } = hp;
  const shape = { heads: H, kvHeads: KV, headDim: hd };
  const ids = b.input('input_ids', INT64, ['batch_size', 'sequence_length']);
  // GQA derives its mask from seqlens_k; the other forms take the contract's attention_mask.
  const mask = attention === 'gqa' ? undefined : b.input('attention_mask', INT64, ['batch_size', 'total_sequence_length']);
  const pos = b.input('position_ids', INT64, ['batch_size', 'sequence_length']);
  declareCacheIo(b, attention, hp.layers, shape);
  b.output('logits', FLOAT, ['batch_size', 'sequence_length', V]);
  declareCacheOutputs(b, attention, hp.layers, shape);

  let x = embed(b, file, hp, ids, mode);
  const { cos, sin } = rope(b, hp, pos);
  const allowed = mask ? attentionMask(b, ids, mask) : '';
  const core = coreConsts(b, shape);
  const c = {
    shapeQ: b.int64Const([0, 0, H, hd]),
    shapeKv: b.int64Const([0, 0, KV, hd]),
    half: [b.int64Const([0]), b.int64Const([hd / 2]), b.int64Const([hd]), b.int64Const([3])] as const,
  };
  const t = (name: string) => file.tensor(name);
  for (let i = 0; i < hp.layers; i++) {
    const L = `/model/layers.${i}`;
    const blk = `blk.${i}`;
    const h = emitRmsNorm(b, `${L}/input_layernorm`, x, `model.layers.${i}.input_layernorm.weight`, dequantizeTensor(file, t(`${blk}.attn_norm.weight`)), hp.rmsEps);
    // llama.cpp permutes Llama's Q/K rows for its RoPE; its Qwen2 conversion keeps HF's order (NeoX RoPE).
    const permuted = hp.architecture === 'llama';
    const lin = (sub: string, tensor: string, input: string, unpermuteHeads?: number) => {
      const y = emitLinear(b, `${L}/${sub}`, input, { file, info: t(`${blk}.${tensor}.weight`), ...(unpermuteHeads && permuted ? { unpermuteHeads } : {}) }, mode, undefined, accuracyLevel).output;
      return withBias(b, file, `${L}/${sub}`, y, `${blk}.${tensor}.bias`);
    };
    const A = `${L}/self_attn`;
    const heads = (y: string, shape: string) => b.op1(A, 'Transpose', [b.op1(A, 'Reshape', [y, shape])], { perm: [0, 2, 1, 3] });
    let q = heads(lin('self_attn/q_proj', 'attn_q', h, H), c.shapeQ);
    let k = heads(lin('self_attn/k_proj', 'attn_k', h, KV), c.shapeKv);
    const v = heads(lin('self_attn/v_proj', 'attn_v', h), c.shapeKv);
    q = applyRope(b, A, q, cos, sin, c.half);
    k = applyRope(b, A, k, cos, sin, c.half);
    const merged = attentionCore(b, attention, A, i, shape, core, q, k, v, allowed);
    x = b.op1(L, 'Add', [x, lin('self_attn/o_proj', 'attn_output', merged)]);

    const h2 = emitRmsNorm(b, `${L}/post_attention_layernorm`, x, `model.layers.${i}.post_attention_layernorm.weight`, dequantizeTensor(file, t(`${blk}.ffn_norm.weight`)), hp.rmsEps);
    const M = `${L}/mlp`;
    const g = lin('mlp/gate_proj', 'ffn_gate', h2);
    const act = b.op1(M, 'Mul', [g, b.op1(M, 'Sigmoid', [g])]);
    const up = lin('mlp/up_proj', 'ffn_up', h2);
    x = b.op1(L, 'Add', [x, lin('mlp/down_proj', 'ffn_down', b.op1(M, 'Mul', [act, up]))]);
  }
  const out = emitRmsNorm(b, '/model/norm', x, 'model.norm.weight', dequantizeTensor(file, t('output_norm.weight')), hp.rmsEps);
  const head = hp.tiedEmbeddings ? t('token_embd.weight') : t('output.weight');
  emitLinear(b, '/lm_head', out, { file, info: head }, mode, 'logits', accuracyLevel);
  const initializerBytes = b.initializers.reduce((s, i) => s + (i.rawData?.byteLength ?? 0), 0);
  if (initializerBytes > 2_000_000_000) {
    throw new Error(`the ${mode} model needs ${(initializerBytes / 1e9).toFixed(2)} GB of weights, over ONNX's 2 GB single-file limit`);
  }
  const opsets = [{ domain: '', version: 17 }, ...(b.nodes.some((n) => n.domain === MS_DOMAIN) ? [{ domain: MS_DOMAIN, version: 1 }] : [])];
  return { bytes: b.encode('patchbay_llama', opsets), initializerBytes };
}

/**
 * Token embeddings. Untied: Gather rows of `model.embed_tokens.weight` [V, d]. Tied (no output.weight in the
 * GGUF): one matrix only, `lm_head.weight` [d, V] = Eᵀ, read by Gather(axis = 1) + Transpose, as the GPT-2
 * export does; emitLinear creates that initializer for `/lm_head`.
 */
function embed(b: GraphBuilder, file: GgufFile, hp: LlamaHparams, ids: string, mode: WeightsMode): string {
  const S = '/model/embed_tokens';
  if (hp.tiedEmbeddings && mode !== 'f32') {
    // q4/q8: the quantized table, stored once for this lookup and the tied lm_head (src/import/quant/).
    const quantized = emitQuantizedEmbedding(b, file, file.tensor('token_embd.weight'), ids, S, 'model.embed_tokens', mode);
    if (quantized) return quantized;
  }
  if (hp.tiedEmbeddings) {
    const cols = b.op1(S, 'Gather', ['lm_head.weight', ids], { axis: 1 }); // [d, B, S]
    return b.op1(S, 'Transpose', [cols], { perm: [1, 2, 0] });
  }
  const name = b.floatInit('model.embed_tokens.weight', [hp.vocabSize, hp.hidden], dequantizeTensor(file, file.tensor('token_embd.weight')));
  return b.op1(S, 'Gather', [name, ids], { axis: 0 });
}

/**
 * `y + bias` when the GGUF has `<tensor>.bias` (Qwen2's q/k/v): an Add of a float32 [d_out] initializer named
 * after the HF module (`model.layers.0.self_attn.q_proj.bias`), the pattern the graph rewrite reads as the
 * layer's bias (runtime/graph/linear-layers.ts), so adapter branches attach after it as on a biased Linear.
 */
function withBias(b: GraphBuilder, file: GgufFile, scope: string, y: string, tensor: string): string {
  const info = file.tensors.get(tensor);
  if (!info) return y;
  const name = `${modulePath(`${scope}/Add`, '')}.bias`;
  b.floatInit(name, [info.dims[0]!], dequantizeTensor(file, info));
  return b.op1(scope, 'Add', [y, name]);
}

/** cos/sin [B, 1, S, hd] from position_ids, in float32 as HF's LlamaRotaryEmbedding. */
function rope(b: GraphBuilder, hp: LlamaHparams, pos: string): { cos: string; sin: string } {
  const S = '/model/rotary_emb';
  const half = hp.headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.fround(hp.ropeTheta ** Math.fround((2 * i) / hp.headDim));
  const invName = b.floatInit('model.rotary_emb.inv_freq', [1, 1, half], inv);
  const p = b.op1(S, 'Cast', [b.op1(S, 'Unsqueeze', [pos, b.int64Const([2])])], { to: FLOAT }); // [B, S, 1]
  const freqs = b.op1(S, 'Mul', [p, invName]); // [B, S, hd/2]
  const emb = b.op1(S, 'Concat', [freqs, freqs], { axis: -1 });
  const one = b.int64Const([1]);
  return {
    cos: b.op1(S, 'Unsqueeze', [b.op1(S, 'Cos', [emb]), one]),
    sin: b.op1(S, 'Unsqueeze', [b.op1(S, 'Sin', [emb]), one]),
  };
}

/** q·cos + rotate_half(q)·sin, rotate_half(q) = [−q₂, q₁] over the last axis halves. */
function applyRope(b: GraphBuilder, scope: string, q: string, cos: string, sin: string, half: readonly [string, string, string, string]): string {
  const [zero, mid, end, axis] = half;
  const q1 = b.op1(scope, 'Slice', [q, zero, mid, axis]);
  const q2 = b.op1(scope, 'Slice', [q, mid, end, axis]);
  const rot = b.op1(scope, 'Concat', [b.op1(scope, 'Neg', [q2]), q1], { axis: -1 });
  return b.op1(scope, 'Add', [b.op1(scope, 'Mul', [q, cos]), b.op1(scope, 'Mul', [rot, sin])]);
}

/** allowed[b, 0, j, k] = (k ≤ P + j) ∧ (attention_mask[b, k] = 1), P = T − S; [B, 1, S, T] bool. */
function attentionMask(b: GraphBuilder, ids: string, mask: string): string {
  const S = '/model/mask';
  const gather = (x: string, i: number) => b.op1(S, 'Gather', [b.op1(S, 'Shape', [x]), b.int64Const([i], [])], { axis: 0 });
  const seq = gather(ids, 1);
  const total = gather(mask, 1);
  const past = b.op1(S, 'Sub', [total, seq]);
  const one = b.int64Const([1], []);
  const qpos = b.op1(S, 'Range', [past, total, one]); // [S]
  const kpos = b.op1(S, 'Range', [b.int64Const([0], []), total, one]); // [T]
  const causal = b.op1(S, 'LessOrEqual', [b.op1(S, 'Unsqueeze', [kpos, b.int64Const([0])]), b.op1(S, 'Unsqueeze', [qpos, b.int64Const([1])])]); // [S, T]
  const real = b.op1(S, 'Unsqueeze', [b.op1(S, 'Equal', [mask, b.int64Const([1], [])]), b.int64Const([1, 2])]); // [B, 1, 1, T]
  return b.op1(S, 'And', [causal, real]);
}
