/**
 * The Llama blocks above the top edited layer, the final RMSNorm and the LM head, in TypeScript (float64), with
 * a hand-written backward pass: the value search needs ∂loss/∂δ where δ is added to the residual stream after
 * the top edited block. Weights are the base model's ONNX initializers (HF names, graph orientation
 * [d_in, d_out]; `lm_head.weight` [D, V], which tied models (SmolLM2) share with the token embedding).
 *
 * Forward per block (rows t, D = d_model, H query heads and G key/value heads of size d, GQA: head h reads
 * key/value head ⌊h·G/H⌋; RoPE rotate-half form, θ_{p,i} = p·base^(−2i/d)):
 *   a = RMS₁(h);  q = rope(a·W_q), k = rope(a·W_k), v = a·W_v
 *   P_h = softmax(q_h·k_gᵀ/√d + causal mask);  o = concat_h P_h·v_g;  h ← h + o·W_o
 *   m = RMS₂(h);  h ← h + (silu(m·W_gate) ⊙ m·W_up)·W_down
 * then logits = RMS_f(h)·W_lm at the target positions, loss = mean NLL of the target tokens.
 *
 * Rows before the first δ position never change (causal attention), so their keys/values per block are
 * computed once per probe result (cached by the `hidden` array's identity) and each search step runs only
 * the rows from the first δ on. Checked against PyTorch autograd (test/edits/llama-reference.test.ts,
 * fixture from tools/edits/make_llama_fixture.py).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { headNll, matmul, matmulBackward, rmsNorm, rmsNormBackward, type RmsCache } from './dense.ts';
import { EditError } from './errors.ts';
import type { TargetToken, UpperStack } from './upper.ts';

export type ReadWeight = (initializer: string) => Float32Array;

/** The stack above the top of `layers` (`model.layers.<i>.…` module paths) of the model in `model.dir`. */
export function llamaUpper(model: { dir: string }, read: ReadWeight, layers: readonly string[]): LlamaUpper {
  const top = Math.max(...layers.map((n) => Number(/^model\.layers\.(\d+)\./.exec(n)?.[1] ?? NaN)));
  if (!Number.isFinite(top)) throw new EditError('unsupported_model', 'Llama edit layers must be model.layers.<i>.* modules', 'layer');
  return new LlamaUpper(read, top + 1, LlamaUpper.shapeFromConfig(model.dir));
}

/** What the stack needs from config.json beyond ModelInfo. */
export interface LlamaShape {
  dModel: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  eps: number;
  ropeTheta: number;
  numLayers: number;
}

interface BlockWeights {
  ln1: Float32Array; wq: Float32Array; wk: Float32Array; wv: Float32Array; wo: Float32Array;
  ln2: Float32Array; wg: Float32Array; wu: Float32Array; wd: Float32Array;
}

interface BlockCache {
  n: number;
  rms1: RmsCache;
  /** Rotated queries of the rows run [n, H·d]. */
  q: Float64Array;
  /** Rotated keys and values of every row so far (prefix + rows run) [(s + n), G·d]. */
  k: Float64Array;
  v: Float64Array;
  /** [H, n, s + n]. */
  probs: Float64Array;
  rms2: RmsCache;
  gate: Float64Array;
  up: Float64Array;
  out: Float64Array;
}

interface Prefix {
  s: number;
  /** Per block, rotated keys / values of rows [0, s). */
  k: Float64Array[];
  v: Float64Array[];
}

export class LlamaUpper implements UpperStack {
  private readonly blocks: BlockWeights[] = [];
  private readonly normF: Float32Array;
  private readonly lm: Float32Array;
  private readonly ffn: number;
  private readonly inv: Float64Array;
  private readonly prefixes = new WeakMap<Float32Array, Prefix>();
  readonly dModel: number;

  constructor(read: ReadWeight, firstBlock: number, readonly shape: LlamaShape) {
    this.dModel = shape.dModel;
    for (let i = firstBlock; i < shape.numLayers; i++) {
      const p = `model.layers.${i}`;
      this.blocks.push({
        ln1: read(`${p}.input_layernorm.weight`),
        wq: read(`${p}.self_attn.q_proj.weight`), wk: read(`${p}.self_attn.k_proj.weight`),
        wv: read(`${p}.self_attn.v_proj.weight`), wo: read(`${p}.self_attn.o_proj.weight`),
        ln2: read(`${p}.post_attention_layernorm.weight`),
        wg: read(`${p}.mlp.gate_proj.weight`), wu: read(`${p}.mlp.up_proj.weight`), wd: read(`${p}.mlp.down_proj.weight`),
      });
    }
    this.normF = read('model.norm.weight');
    this.lm = read('lm_head.weight');
    this.ffn = this.blocks[0] ? this.blocks[0].wd.length / shape.dModel : 0;
    // Inverse frequencies rounded through float32 as the exported graphs compute them.
    const half = shape.headDim / 2;
    this.inv = Float64Array.from({ length: half }, (_, i) => Math.fround(1 / Math.fround(shape.ropeTheta ** Math.fround((2 * i) / shape.headDim))));
  }

  /** Reads heads, ε and the RoPE base from `<dir>/config.json` (HF LlamaConfig names). */
  static shapeFromConfig(dir: string): LlamaShape {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const num = (k: string, fallback?: number): number => {
      const v = c[k] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new EditError('unsupported_model', `${dir}/config.json has no numeric ${k}`);
      return v;
    };
    if (c['rope_scaling'] !== undefined && c['rope_scaling'] !== null) {
      throw new EditError('unsupported_model', `${dir}/config.json sets rope_scaling; the Llama value search implements plain RoPE only`);
    }
    const rope = (c['rope_parameters'] as { rope_theta?: number } | undefined)?.rope_theta;
    const dModel = num('hidden_size');
    const heads = num('num_attention_heads');
    return {
      dModel, heads, kvHeads: num('num_key_value_heads', heads), headDim: num('head_dim', dModel / heads), vocab: num('vocab_size'),
      eps: num('rms_norm_eps', 1e-6), ropeTheta: num('rope_theta', rope ?? 10000), numLayers: num('num_hidden_layers'),
    };
  }

  lossAndGrad(hidden: Float32Array, t: number, at: readonly number[], delta: Float64Array, targets: readonly TargetToken[], grad: boolean): { nll: number; grad: Float64Array } {
    const D = this.dModel;
    const s = Math.min(...at, ...targets.map((x) => x.pos));
    const prefix = this.prefix(hidden, s);
    const n = t - s;
    let h: Float64Array = Float64Array.from(hidden.subarray(s * D, t * D));
    at.forEach((p, a) => {
      for (let i = 0; i < D; i++) h[(p - s) * D + i]! += delta[a * D + i]!;
    });
    const caches: BlockCache[] = [];
    for (const [b, w] of this.blocks.entries()) {
      const c = this.blockForward(w, h, n, s, prefix.k[b]!, prefix.v[b]!);
      caches.push(c);
      h = c.out;
    }
    const fin = rmsNorm(h, n, D, this.normF, this.shape.eps);
    const shifted = targets.map((x) => ({ pos: x.pos - s, token: x.token }));
    const head = headNll(fin.y, D, this.shape.vocab, this.lm, shifted, n, grad);
    const out = new Float64Array(at.length * D);
    if (!grad) return { nll: head.nll, grad: out };
    let dh = rmsNormBackward(head.dx, fin.cache, n, D, this.normF);
    for (let b = this.blocks.length - 1; b >= 0; b--) dh = this.blockBackward(this.blocks[b]!, caches[b]!, dh, s);
    at.forEach((p, a) => out.set(dh.subarray((p - s) * D, (p - s + 1) * D), a * D));
    return { nll: head.nll, grad: out };
  }

  /** Keys/values of rows [0, s) per block: δ-independent, so computed once per probe result. */
  private prefix(hidden: Float32Array, s: number): Prefix {
    const hit = this.prefixes.get(hidden);
    if (hit && hit.s === s) return hit;
    const D = this.dModel;
    const kv = this.shape.kvHeads * this.shape.headDim;
    const p: Prefix = { s, k: [], v: [] };
    let h: Float64Array = Float64Array.from(hidden.subarray(0, s * D));
    for (const w of this.blocks) {
      const c = this.blockForward(w, h, s, 0, new Float64Array(0), new Float64Array(0));
      p.k.push(c.k.slice(0, s * kv));
      p.v.push(c.v.slice(0, s * kv));
      h = c.out;
    }
    this.prefixes.set(hidden, p);
    return p;
  }

  /** Rotate-half RoPE in place on rows [n, heads·d] at positions start…start+n−1; `inverse` applies Rᵀ (backward). */
  private rope(x: Float64Array, n: number, heads: number, start: number, inverse: boolean): void {
    const d = this.shape.headDim;
    const half = d / 2;
    const sign = inverse ? -1 : 1;
    for (let r = 0; r < n; r++) {
      const pos = start + r;
      for (let i = 0; i < half; i++) {
        const th = pos * this.inv[i]!;
        const cos = Math.cos(th);
        const sin = sign * Math.sin(th);
        for (let hd = 0; hd < heads; hd++) {
          const o = r * heads * d + hd * d;
          const a = x[o + i]!;
          const b = x[o + i + half]!;
          x[o + i] = a * cos - b * sin;
          x[o + i + half] = b * cos + a * sin;
        }
      }
    }
  }

  private blockForward(w: BlockWeights, h: Float64Array, n: number, s: number, kPre: Float64Array, vPre: Float64Array): BlockCache {
    const { dModel: D, heads: H, kvHeads: G, headDim: d, eps } = this.shape;
    const F = this.ffn;
    const rms1 = rmsNorm(h, n, D, w.ln1, eps);
    const q = matmul(rms1.y, n, D, H * d, w.wq);
    const kNew = matmul(rms1.y, n, D, G * d, w.wk);
    const vNew = matmul(rms1.y, n, D, G * d, w.wv);
    this.rope(q, n, H, s, false);
    this.rope(kNew, n, G, s, false);
    const k = new Float64Array((s + n) * G * d);
    k.set(kPre);
    k.set(kNew, s * G * d);
    const v = new Float64Array((s + n) * G * d);
    v.set(vPre);
    v.set(vNew, s * G * d);
    const T = s + n;
    const probs = new Float64Array(H * n * T);
    const o = new Float64Array(n * H * d);
    const scale = 1 / Math.sqrt(d);
    const per = H / G;
    for (let hd = 0; hd < H; hd++) {
      const g = Math.floor(hd / per);
      for (let i = 0; i < n; i++) {
        const p = s + i;
        const row = (hd * n + i) * T;
        const qo = i * H * d + hd * d;
        let max = -Infinity;
        for (let j = 0; j <= p; j++) {
          const ko = j * G * d + g * d;
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[qo + e]! * k[ko + e]!;
          probs[row + j] = dot * scale;
          max = Math.max(max, dot * scale);
        }
        let sum = 0;
        for (let j = 0; j <= p; j++) sum += probs[row + j] = Math.exp(probs[row + j]! - max);
        for (let j = 0; j <= p; j++) {
          const pr = (probs[row + j]! /= sum);
          const vo = j * G * d + g * d;
          for (let e = 0; e < d; e++) o[qo + e]! += pr * v[vo + e]!;
        }
      }
    }
    const attn = matmul(o, n, H * d, D, w.wo);
    const h2 = new Float64Array(n * D);
    for (let i = 0; i < h2.length; i++) h2[i] = h[i]! + attn[i]!;
    const rms2 = rmsNorm(h2, n, D, w.ln2, eps);
    const gate = matmul(rms2.y, n, D, F, w.wg);
    const up = matmul(rms2.y, n, D, F, w.wu);
    const act = new Float64Array(n * F);
    for (let i = 0; i < act.length; i++) act[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
    const mlp = matmul(act, n, F, D, w.wd);
    const out = new Float64Array(n * D);
    for (let i = 0; i < out.length; i++) out[i] = h2[i]! + mlp[i]!;
    return { n, rms1: rms1.cache, q, k, v, probs, rms2: rms2.cache, gate, up, out };
  }

  /** ∂/∂(block input rows) from ∂/∂(block output rows); the prefix rows are constants (their grads dropped). */
  private blockBackward(w: BlockWeights, c: BlockCache, dOut: Float64Array, s: number): Float64Array {
    const { dModel: D, heads: H, kvHeads: G, headDim: d } = this.shape;
    const F = this.ffn;
    const n = c.n;
    // MLP: out = h2 + (silu(gate) ⊙ up)·W_d;  silu'(x) = σ(x)(1 + x(1 − σ(x))).
    const dAct = matmulBackward(dOut, n, F, D, w.wd);
    const dGate = new Float64Array(n * F);
    const dUp = new Float64Array(n * F);
    for (let i = 0; i < dAct.length; i++) {
      const x = c.gate[i]!;
      const sg = 1 / (1 + Math.exp(-x));
      dGate[i] = dAct[i]! * c.up[i]! * sg * (1 + x * (1 - sg));
      dUp[i] = dAct[i]! * x * sg;
    }
    const dm = matmulBackward(dGate, n, D, F, w.wg);
    matmulBackward(dUp, n, D, F, w.wu, dm);
    const dRms2 = rmsNormBackward(dm, c.rms2, n, D, w.ln2);
    const dh2 = new Float64Array(n * D);
    for (let i = 0; i < dh2.length; i++) dh2[i] = dOut[i]! + dRms2[i]!;
    // Attention: h2 = h + o·W_o.
    const dO = matmulBackward(dh2, n, H * d, D, w.wo);
    const T = s + n;
    const dq = new Float64Array(n * H * d);
    const dk = new Float64Array(n * G * d);
    const dv = new Float64Array(n * G * d);
    const dP = new Float64Array(T);
    const scale = 1 / Math.sqrt(d);
    const per = H / G;
    for (let hd = 0; hd < H; hd++) {
      const g = Math.floor(hd / per);
      for (let i = 0; i < n; i++) {
        const p = s + i;
        const row = (hd * n + i) * T;
        const qo = i * H * d + hd * d;
        let dot = 0;
        for (let j = 0; j <= p; j++) {
          const vo = j * G * d + g * d;
          let x = 0;
          for (let e = 0; e < d; e++) x += dO[qo + e]! * c.v[vo + e]!;
          dP[j] = x;
          dot += x * c.probs[row + j]!;
        }
        for (let j = 0; j <= p; j++) {
          const pr = c.probs[row + j]!;
          const dS = pr * (dP[j]! - dot) * scale;
          const ko = j * G * d + g * d;
          // q_i gets dS·k_j; k_j gets dS·q_i and v_j gets P_ij·dO_i (only rows run: the prefix is constant).
          for (let e = 0; e < d; e++) dq[qo + e]! += dS * c.k[ko + e]!;
          if (j < s) continue;
          const ro = (j - s) * G * d + g * d;
          for (let e = 0; e < d; e++) {
            dk[ro + e]! += dS * c.q[qo + e]!;
            dv[ro + e]! += pr * dO[qo + e]!;
          }
        }
      }
    }
    this.rope(dq, n, H, s, true);
    this.rope(dk, n, G, s, true);
    const da = matmulBackward(dq, n, D, H * d, w.wq);
    matmulBackward(dk, n, D, G * d, w.wk, da);
    matmulBackward(dv, n, D, G * d, w.wv, da);
    const dRms1 = rmsNormBackward(da, c.rms1, n, D, w.ln1);
    const dh = new Float64Array(n * D);
    for (let i = 0; i < dh.length; i++) dh[i] = dh2[i]! + dRms1[i]!;
    return dh;
  }
}
