/**
 * The GPT-2 blocks above the top edited layer, final LayerNorm and LM head, in TypeScript (float64
 * activations, float32 weights), with a hand-written backward pass: the value search needs ∂loss/∂δ where δ
 * is added to the residual stream after the top edited block at the key positions. Weights are the base
 * model's ONNX initializers (HF names, Conv1D layout [d_in, d_out]; `lm_head.weight` [d_model, vocab]).
 *
 * Forward per block (T positions, D = d_model, H heads of size d = D/H, causal):
 *   a = LN₁(h);  [q k v] = a·W_attn + b_attn;  P_h = softmax(q_h·k_hᵀ/√d + causal mask);  o = concat_h P_h·v_h
 *   h ← h + o·W_proj + b_proj;  m = LN₂(h);  h ← h + gelu_new(m·W_fc + b_fc)·W_mlp + b_mlp
 * then logits = LN_f(h)·W_lm at the target positions, loss = mean NLL of the target tokens.
 *
 * Speed (the search evaluates this a few times per context per edit): positions before the first key
 * position `from` do not depend on δ (causal attention), so their keys/values of every block are computed
 * once per context (UpperRun) and each evaluation runs only rows from…T−1, forward and backward; the
 * gradient flowing into the fixed rows is dropped (nothing there depends on δ). Products are dot form
 * against transposed weights (kernels.ts). Checked against PyTorch autograd (test/edits/reference.test.ts).
 */
import { dotRows, layerNorm, layerNormBackward, lnCache, transpose, type LnCache } from './kernels.ts';
import type { TargetToken, UpperStack } from './upper.ts';

export type ReadWeight = (initializer: string) => Float32Array;

interface BlockWeights {
  ln1g: Float32Array; ln1b: Float32Array; attnB: Float32Array; projB: Float32Array;
  ln2g: Float32Array; ln2b: Float32Array; fcB: Float32Array; mlpB: Float32Array;
  /** As stored, [d_in, d_out]: dot form for the backward (dx = dy·Wᵀ). */
  attnW: Float32Array; projW: Float32Array; fcW: Float32Array; mlpW: Float32Array;
  /** Transposed, [d_out, d_in]: dot form for the forward (y = x·W). */
  attnWT: Float32Array; projWT: Float32Array; fcWT: Float32Array; mlpWT: Float32Array;
}

/** Per-context state of one evaluation series: fixed rows' q/k/v and the buffers of rows from…T−1. */
interface UpperRun {
  t: number;
  from: number;
  n: number;
  /** The residual rows from…T−1 before δ. */
  base: Float64Array;
  blocks: BlockBuf[];
}

interface BlockBuf {
  input: Float64Array;
  ln1: LnCache;
  /** q|k|v of all T rows [T, 3D]; rows < from fixed at preparation. */
  qkv: Float64Array;
  probs: Float64Array;
  o: Float64Array;
  h2: Float64Array;
  ln2: LnCache;
  f: Float64Array;
  g: Float64Array;
  out: Float64Array;
}

const EPS = 1e-5;
const GELU_C = Math.sqrt(2 / Math.PI);

export class Gpt2Upper implements UpperStack {
  private readonly blocks: BlockWeights[];
  private readonly lnfG: Float32Array;
  private readonly lnfB: Float32Array;
  /** [D, V] as stored (backward) and [V, D] (forward logits). */
  private readonly lm: Float32Array;
  private readonly lmT: Float32Array;
  private readonly hidden4: number;
  /** Prepared runs per probe output (the hidden array's identity), by `from`. */
  private readonly runs = new WeakMap<Float32Array, Map<number, UpperRun>>();

  constructor(read: ReadWeight, firstBlock: number, numLayers: number, readonly dModel: number, readonly heads: number, readonly vocab: number) {
    const D = dModel;
    this.blocks = [];
    for (let i = firstBlock; i < numLayers; i++) {
      const p = `transformer.h.${i}`;
      const attnW = read(`${p}.attn.c_attn.weight`);
      const projW = read(`${p}.attn.c_proj.weight`);
      const fcW = read(`${p}.mlp.c_fc.weight`);
      const mlpW = read(`${p}.mlp.c_proj.weight`);
      const F = fcW.length / D;
      this.blocks.push({
        ln1g: read(`${p}.ln_1.weight`), ln1b: read(`${p}.ln_1.bias`), attnB: read(`${p}.attn.c_attn.bias`), projB: read(`${p}.attn.c_proj.bias`),
        ln2g: read(`${p}.ln_2.weight`), ln2b: read(`${p}.ln_2.bias`), fcB: read(`${p}.mlp.c_fc.bias`), mlpB: read(`${p}.mlp.c_proj.bias`),
        attnW, projW, fcW, mlpW,
        attnWT: transpose(attnW, D, 3 * D), projWT: transpose(projW, D, D), fcWT: transpose(fcW, D, F), mlpWT: transpose(mlpW, F, D),
      });
    }
    this.lnfG = read('transformer.ln_f.weight');
    this.lnfB = read('transformer.ln_f.bias');
    this.lm = read('lm_head.weight');
    this.lmT = transpose(this.lm, D, vocab);
    this.hidden4 = this.blocks[0]?.fcB.length ?? 4 * D;
  }

  /**
   * Mean NLL of `targets` when δ_a (row a of `delta`, [u, D]) is added to `hidden` [t, D] (float32 from the
   * probe) at position `at[a]`, and with `grad` its gradient with respect to every δ_a ([u, D]). Repeated calls
   * with the same `hidden` array reuse its fixed rows (everything before min(at)).
   */
  lossAndGrad(hidden: Float32Array, t: number, at: readonly number[], delta: Float64Array, targets: readonly TargetToken[], grad: boolean): { nll: number; grad: Float64Array } {
    const D = this.dModel;
    const from = Math.min(...at, ...targets.map((x) => x.pos));
    const run = this.run(hidden, t, from);
    const h = Float64Array.from(run.base);
    at.forEach((p, a) => {
      for (let i = 0; i < D; i++) h[(p - from) * D + i]! += delta[a * D + i]!;
    });
    let x: Float64Array = h;
    for (let b = 0; b < this.blocks.length; b++) {
      this.blockForward(this.blocks[b]!, run.blocks[b]!, x, run);
      x = run.blocks[b]!.out;
    }
    const n = run.n;
    const lnf = lnCache(n, D);
    layerNorm(x, 0, n, D, this.lnfG, this.lnfB, EPS, lnf);
    const V = this.vocab;
    const dHf = new Float64Array(n * D);
    const logits = new Float64Array(V);
    let nll = 0;
    for (const { pos, token } of targets) {
      const row = (pos - from) * D;
      dotRows(lnf.y, row, 1, D, this.lmT, V, logits, 0);
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[v]! - max);
      const lse = max + Math.log(sum);
      nll += (lse - logits[token]!) / targets.length;
      if (!grad) continue;
      // ∂/∂logits = (softmax − onehot)/n; ∂/∂x_i = Σ_v that · W_lm[i, v] (dot form against W_lm rows).
      for (let v = 0; v < V; v++) logits[v] = Math.exp(logits[v]! - lse) / targets.length;
      logits[token]! -= 1 / targets.length;
      const g = new Float64Array(D);
      dotRows(logits, 0, 1, V, this.lm, D, g, 0);
      for (let i = 0; i < D; i++) dHf[row + i]! += g[i]!;
    }
    const out = new Float64Array(at.length * D);
    if (!grad) return { nll, grad: out };
    let dh: Float64Array = new Float64Array(n * D);
    layerNormBackward(dHf, lnf, n, D, this.lnfG, dh);
    for (let b = this.blocks.length - 1; b >= 0; b--) dh = this.blockBackward(this.blocks[b]!, run.blocks[b]!, dh, run);
    at.forEach((p, a) => out.set(dh.subarray((p - from) * D, (p - from + 1) * D), a * D));
    return { nll, grad: out };
  }

  /** The prepared run of (hidden, from): fixed rows' q/k/v from one full forward at δ = 0. */
  private run(hidden: Float32Array, t: number, from: number): UpperRun {
    let byFrom = this.runs.get(hidden);
    if (!byFrom) this.runs.set(hidden, (byFrom = new Map()));
    let run = byFrom.get(from);
    if (run) return run;
    const D = this.dModel;
    run = this.newRun(t, from, Float64Array.from(hidden.subarray(from * D, t * D)));
    if (from > 0) {
      const full = this.newRun(t, 0, Float64Array.from(hidden.subarray(0, t * D)));
      let x: Float64Array = full.base;
      for (let b = 0; b < this.blocks.length; b++) {
        this.blockForward(this.blocks[b]!, full.blocks[b]!, x, full);
        x = full.blocks[b]!.out;
        run.blocks[b]!.qkv.set(full.blocks[b]!.qkv.subarray(0, from * 3 * D));
      }
    }
    byFrom.set(from, run);
    return run;
  }

  private newRun(t: number, from: number, base: Float64Array): UpperRun {
    const D = this.dModel;
    const F = this.hidden4;
    const n = t - from;
    const blocks = this.blocks.map(() => ({
      input: base,
      ln1: lnCache(n, D),
      qkv: new Float64Array(t * 3 * D),
      probs: new Float64Array(this.heads * n * t),
      o: new Float64Array(n * D),
      h2: new Float64Array(n * D),
      ln2: lnCache(n, D),
      f: new Float64Array(n * F),
      g: new Float64Array(n * F),
      out: new Float64Array(n * D),
    }));
    return { t, from, n, base, blocks };
  }

  /** Rows from…T−1 of one block; `h` [n, D]. Results in `c` (overwritten). */
  private blockForward(w: BlockWeights, c: BlockBuf, h: Float64Array, run: UpperRun): void {
    const D = this.dModel;
    const H = this.heads;
    const d = D / H;
    const F = this.hidden4;
    const { t, from, n } = run;
    const D3 = 3 * D;
    c.input = h;
    layerNorm(h, 0, n, D, w.ln1g, w.ln1b, EPS, c.ln1);
    dotRows(c.ln1.y, 0, n, D, w.attnWT, D3, c.qkv, from * D3, w.attnB);
    const { qkv, probs, o } = c;
    o.fill(0);
    const scale = 1 / Math.sqrt(d);
    for (let hd = 0; hd < H; hd++) {
      for (let r = 0; r < n; r++) {
        const i = from + r;
        const pRow = (hd * n + r) * t;
        const qi = i * D3 + hd * d;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          const kj = j * D3 + D + hd * d;
          let s = 0;
          for (let e = 0; e < d; e++) s += qkv[qi + e]! * qkv[kj + e]!;
          probs[pRow + j] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += probs[pRow + j] = Math.exp(probs[pRow + j]! - max);
        const or = r * D + hd * d;
        for (let j = 0; j <= i; j++) {
          const p = (probs[pRow + j]! /= sum);
          const vj = j * D3 + 2 * D + hd * d;
          for (let e = 0; e < d; e++) o[or + e]! += p * qkv[vj + e]!;
        }
      }
    }
    dotRows(o, 0, n, D, w.projWT, D, c.h2, 0, w.projB);
    for (let i = 0; i < n * D; i++) c.h2[i]! += h[i]!;
    layerNorm(c.h2, 0, n, D, w.ln2g, w.ln2b, EPS, c.ln2);
    dotRows(c.ln2.y, 0, n, D, w.fcWT, F, c.f, 0, w.fcB);
    for (let i = 0; i < n * F; i++) {
      const x = c.f[i]!;
      c.g[i] = 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
    }
    dotRows(c.g, 0, n, F, w.mlpWT, D, c.out, 0, w.mlpB);
    for (let i = 0; i < n * D; i++) c.out[i]! += c.h2[i]!;
  }

  /** ∂loss/∂(block input rows from…T−1) from ∂loss/∂(block output rows from…T−1). */
  private blockBackward(w: BlockWeights, c: BlockBuf, dOut: Float64Array, run: UpperRun): Float64Array {
    const D = this.dModel;
    const H = this.heads;
    const d = D / H;
    const F = this.hidden4;
    const { t, from, n } = run;
    const D3 = 3 * D;
    // MLP: out = h2 + gelu(f)·W_mlp + b.
    const df = new Float64Array(n * F);
    dotRows(dOut, 0, n, D, w.mlpW, F, df, 0);
    for (let i = 0; i < n * F; i++) {
      const x = c.f[i]!;
      const th = Math.tanh(GELU_C * (x + 0.044715 * x * x * x));
      const du = GELU_C * (1 + 3 * 0.044715 * x * x);
      df[i]! *= 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du;
    }
    const tmp = new Float64Array(n * D);
    dotRows(df, 0, n, F, w.fcW, D, tmp, 0);
    const dh2 = new Float64Array(n * D);
    layerNormBackward(tmp, c.ln2, n, D, w.ln2g, dh2);
    for (let i = 0; i < n * D; i++) dh2[i]! += dOut[i]!;
    // Attention: h2 = h + o·W_proj + b. Only rows ≥ from get gradients (the fixed rows do not depend on δ).
    const dO = new Float64Array(n * D);
    dotRows(dh2, 0, n, D, w.projW, D, dO, 0);
    const dQkv = new Float64Array(n * D3);
    const scale = 1 / Math.sqrt(d);
    const dP = new Float64Array(t);
    const { qkv, probs } = c;
    for (let hd = 0; hd < H; hd++) {
      for (let r = 0; r < n; r++) {
        const i = from + r;
        const pRow = (hd * n + r) * t;
        const oi = r * D + hd * d;
        let dot = 0;
        for (let j = 0; j <= i; j++) {
          const vj = j * D3 + 2 * D + hd * d;
          let s = 0;
          for (let e = 0; e < d; e++) s += dO[oi + e]! * qkv[vj + e]!;
          dP[j] = s;
          dot += s * probs[pRow + j]!;
        }
        const qi = i * D3 + hd * d;
        const dqi = r * D3 + hd * d;
        for (let j = 0; j <= i; j++) {
          const p = probs[pRow + j]!;
          const dS = p * (dP[j]! - dot) * scale;
          const kj = j * D3 + D + hd * d;
          // q_i gets dS·k_j; for j ≥ from also v_j gets P_ij·dO_i and k_j gets dS·q_i.
          for (let e = 0; e < d; e++) dQkv[dqi + e]! += dS * qkv[kj + e]!;
          if (j < from) continue;
          const dj = (j - from) * D3 + hd * d;
          for (let e = 0; e < d; e++) {
            dQkv[dj + 2 * D + e]! += p * dO[oi + e]!;
            dQkv[dj + D + e]! += dS * qkv[qi + e]!;
          }
        }
      }
    }
    dotRows(dQkv, 0, n, D3, w.attnW, D, tmp, 0);
    const dh = new Float64Array(n * D);
    layerNormBackward(tmp, c.ln1, n, D, w.ln1g, dh);
    for (let i = 0; i < n * D; i++) dh[i]! += dh2[i]!;
    return dh;
  }
}
