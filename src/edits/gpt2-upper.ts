/**
 * The GPT-2 blocks above the top edited layer, final LayerNorm and LM head, in TypeScript (float64), with a
 * hand-written backward pass: the value search needs ∂loss/∂δ where δ is added to the residual stream
 * after the top edited block at the subject's last token. Weights are the base model's ONNX initializers
 * (HF names, Conv1D layout [d_in, d_out]; `lm_head.weight` [d_model, vocab]).
 *
 * Forward per block (T positions, D = d_model, H heads of size d = D/H, causal):
 *   a = LN₁(h);  [q k v] = a·W_attn + b_attn;  P_h = softmax(q_h·k_hᵀ/√d + causal mask);  o = concat_h P_h·v_h
 *   h ← h + o·W_proj + b_proj;  m = LN₂(h);  h ← h + gelu_new(m·W_fc + b_fc)·W_mlp + b_mlp
 * then logits = LN_f(h)·W_lm at the target positions, loss = mean NLL of the target tokens.
 * Checked against PyTorch autograd (test/edits/values.test.ts, fixture from tools/edits/make_fixture.py).
 */
export type ReadWeight = (initializer: string) => Float32Array;

interface BlockWeights {
  ln1g: Float32Array; ln1b: Float32Array; attnW: Float32Array; attnB: Float32Array; projW: Float32Array; projB: Float32Array;
  ln2g: Float32Array; ln2b: Float32Array; fcW: Float32Array; fcB: Float32Array; mlpW: Float32Array; mlpB: Float32Array;
}

export interface TargetToken {
  /** Position whose logits predict `token`. */
  pos: number;
  token: number;
}

const EPS = 1e-5;
const GELU_C = Math.sqrt(2 / Math.PI);

export class Gpt2Upper {
  private readonly blocks: BlockWeights[];
  private readonly lnfG: Float32Array;
  private readonly lnfB: Float32Array;
  private readonly lm: Float32Array;
  private readonly hidden4: number;

  constructor(read: ReadWeight, firstBlock: number, numLayers: number, readonly dModel: number, readonly heads: number, readonly vocab: number) {
    this.blocks = [];
    for (let i = firstBlock; i < numLayers; i++) {
      const p = `transformer.h.${i}`;
      this.blocks.push({
        ln1g: read(`${p}.ln_1.weight`), ln1b: read(`${p}.ln_1.bias`),
        attnW: read(`${p}.attn.c_attn.weight`), attnB: read(`${p}.attn.c_attn.bias`),
        projW: read(`${p}.attn.c_proj.weight`), projB: read(`${p}.attn.c_proj.bias`),
        ln2g: read(`${p}.ln_2.weight`), ln2b: read(`${p}.ln_2.bias`),
        fcW: read(`${p}.mlp.c_fc.weight`), fcB: read(`${p}.mlp.c_fc.bias`),
        mlpW: read(`${p}.mlp.c_proj.weight`), mlpB: read(`${p}.mlp.c_proj.bias`),
      });
    }
    this.lnfG = read('transformer.ln_f.weight');
    this.lnfB = read('transformer.ln_f.bias');
    this.lm = read('lm_head.weight');
    this.hidden4 = this.blocks[0]?.fcB.length ?? 4 * dModel;
  }

  /**
   * Mean NLL of `targets` when δ_a (row a of `delta`, [u, D]) is added to `hidden` [T, D] (float32 from the
   * probe) at position `at[a]`, and with `grad` its gradient with respect to every δ_a ([u, D]).
   */
  lossAndGrad(hidden: Float32Array, t: number, at: readonly number[], delta: Float64Array, targets: readonly TargetToken[], grad: boolean): { nll: number; grad: Float64Array } {
    const D = this.dModel;
    let h: Float64Array = Float64Array.from(hidden);
    at.forEach((p, a) => {
      for (let i = 0; i < D; i++) h[p * D + i]! += delta[a * D + i]!;
    });
    const caches: BlockCache[] = [];
    for (const w of this.blocks) {
      const c = this.blockForward(w, h, t);
      caches.push(c);
      h = c.out;
    }
    const lnf = layerNorm(h, t, D, this.lnfG, this.lnfB);
    const V = this.vocab;
    const dHf = new Float64Array(t * D);
    let nll = 0;
    for (const { pos, token } of targets) {
      const logits = new Float64Array(V);
      const row = pos * D;
      for (let i = 0; i < D; i++) {
        const x = lnf.y[row + i]!;
        const wi = i * V;
        for (let v = 0; v < V; v++) logits[v]! += x * this.lm[wi + v]!;
      }
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[v]! - max);
      const lse = max + Math.log(sum);
      nll += (lse - logits[token]!) / targets.length;
      if (!grad) continue;
      // ∂/∂logits = (softmax − onehot)/n; ∂/∂x_i = Σ_v that · W_lm[i, v].
      for (let v = 0; v < V; v++) logits[v] = Math.exp(logits[v]! - lse) / targets.length;
      logits[token]! -= 1 / targets.length;
      for (let i = 0; i < D; i++) {
        const wi = i * V;
        let s = 0;
        for (let v = 0; v < V; v++) s += logits[v]! * this.lm[wi + v]!;
        dHf[row + i] = s;
      }
    }
    const out = new Float64Array(at.length * D);
    if (!grad) return { nll, grad: out };
    let dh = layerNormBackward(dHf, lnf, t, D, this.lnfG);
    for (let b = this.blocks.length - 1; b >= 0; b--) dh = this.blockBackward(this.blocks[b]!, caches[b]!, dh, t);
    at.forEach((p, a) => out.set(dh.subarray(p * D, (p + 1) * D), a * D));
    return { nll, grad: out };
  }

  private blockForward(w: BlockWeights, h: Float64Array, t: number): BlockCache {
    const D = this.dModel;
    const H = this.heads;
    const d = D / H;
    const ln1 = layerNorm(h, t, D, w.ln1g, w.ln1b);
    const qkv = linear(ln1.y, t, D, 3 * D, w.attnW, w.attnB);
    const probs = new Float64Array(H * t * t);
    const o = new Float64Array(t * D);
    const scale = 1 / Math.sqrt(d);
    for (let hd = 0; hd < H; hd++) {
      for (let i = 0; i < t; i++) {
        const pRow = (hd * t + i) * t;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += qkv[i * 3 * D + hd * d + e]! * qkv[j * 3 * D + D + hd * d + e]!;
          probs[pRow + j] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += probs[pRow + j] = Math.exp(probs[pRow + j]! - max);
        for (let j = 0; j <= i; j++) {
          const p = (probs[pRow + j]! /= sum);
          for (let e = 0; e < d; e++) o[i * D + hd * d + e]! += p * qkv[j * 3 * D + 2 * D + hd * d + e]!;
        }
      }
    }
    const attnOut = linear(o, t, D, D, w.projW, w.projB);
    const h2 = new Float64Array(t * D);
    for (let i = 0; i < h2.length; i++) h2[i] = h[i]! + attnOut[i]!;
    const ln2 = layerNorm(h2, t, D, w.ln2g, w.ln2b);
    const F = this.hidden4;
    const f = linear(ln2.y, t, D, F, w.fcW, w.fcB);
    const g = new Float64Array(t * F);
    for (let i = 0; i < g.length; i++) {
      const x = f[i]!;
      g[i] = 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
    }
    const m = linear(g, t, F, D, w.mlpW, w.mlpB);
    const out = new Float64Array(t * D);
    for (let i = 0; i < out.length; i++) out[i] = h2[i]! + m[i]!;
    return { ln1, qkv, probs, o, ln2, f, out };
  }

  private blockBackward(w: BlockWeights, c: BlockCache, dOut: Float64Array, t: number): Float64Array {
    const D = this.dModel;
    const H = this.heads;
    const d = D / H;
    const F = this.hidden4;
    // MLP: out = h2 + gelu(f)·W_mlp + b.
    const dg = linearBackward(dOut, t, F, D, w.mlpW);
    const df = new Float64Array(t * F);
    for (let i = 0; i < df.length; i++) {
      const x = c.f[i]!;
      const u = GELU_C * (x + 0.044715 * x * x * x);
      const th = Math.tanh(u);
      const du = GELU_C * (1 + 3 * 0.044715 * x * x);
      df[i] = dg[i]! * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du);
    }
    const dLn2 = linearBackward(df, t, D, F, w.fcW);
    const dLn2In = layerNormBackward(dLn2, c.ln2, t, D, w.ln2g);
    const dh2 = new Float64Array(t * D);
    for (let i = 0; i < dh2.length; i++) dh2[i] = dOut[i]! + dLn2In[i]!;
    // Attention: h2 = h + o·W_proj + b.
    const dO = linearBackward(dh2, t, D, D, w.projW);
    const dQkv = new Float64Array(t * 3 * D);
    const scale = 1 / Math.sqrt(d);
    const dP = new Float64Array(t);
    for (let hd = 0; hd < H; hd++) {
      for (let i = 0; i < t; i++) {
        const pRow = (hd * t + i) * t;
        let dot = 0;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += dO[i * D + hd * d + e]! * c.qkv[j * 3 * D + 2 * D + hd * d + e]!;
          dP[j] = s;
          dot += s * c.probs[pRow + j]!;
        }
        for (let j = 0; j <= i; j++) {
          const p = c.probs[pRow + j]!;
          const dS = p * (dP[j]! - dot) * scale;
          for (let e = 0; e < d; e++) {
            // v_j gets P_ij·dO_i; q_i gets dS·k_j; k_j gets dS·q_i.
            dQkv[j * 3 * D + 2 * D + hd * d + e]! += p * dO[i * D + hd * d + e]!;
            dQkv[i * 3 * D + hd * d + e]! += dS * c.qkv[j * 3 * D + D + hd * d + e]!;
            dQkv[j * 3 * D + D + hd * d + e]! += dS * c.qkv[i * 3 * D + hd * d + e]!;
          }
        }
      }
    }
    const dLn1 = linearBackward(dQkv, t, D, 3 * D, w.attnW);
    const dLn1In = layerNormBackward(dLn1, c.ln1, t, D, w.ln1g);
    const dh = new Float64Array(t * D);
    for (let i = 0; i < dh.length; i++) dh[i] = dh2[i]! + dLn1In[i]!;
    return dh;
  }
}

interface LnCache {
  y: Float64Array;
  xhat: Float64Array;
  rstd: Float64Array;
}

interface BlockCache {
  ln1: LnCache;
  qkv: Float64Array;
  probs: Float64Array;
  o: Float64Array;
  ln2: LnCache;
  f: Float64Array;
  out: Float64Array;
}

/** y = x·W + b for x [t, a], W [a, b] row-major. */
function linear(x: Float64Array, t: number, a: number, b: number, w: Float32Array, bias: Float32Array): Float64Array {
  const y = new Float64Array(t * b);
  for (let r = 0; r < t; r++) {
    const yr = r * b;
    for (let j = 0; j < b; j++) y[yr + j] = bias[j]!;
    for (let i = 0; i < a; i++) {
      const xi = x[r * a + i]!;
      if (xi === 0) continue;
      const wi = i * b;
      for (let j = 0; j < b; j++) y[yr + j]! += xi * w[wi + j]!;
    }
  }
  return y;
}

/** dx = dy·Wᵀ for y = x·W, dy [t, b], W [a, b]. */
function linearBackward(dy: Float64Array, t: number, a: number, b: number, w: Float32Array): Float64Array {
  const dx = new Float64Array(t * a);
  for (let r = 0; r < t; r++) {
    for (let i = 0; i < a; i++) {
      const wi = i * b;
      let s = 0;
      for (let j = 0; j < b; j++) s += dy[r * b + j]! * w[wi + j]!;
      dx[r * a + i] = s;
    }
  }
  return dx;
}

function layerNorm(x: Float64Array, t: number, n: number, g: Float32Array, b: Float32Array): LnCache {
  const y = new Float64Array(t * n);
  const xhat = new Float64Array(t * n);
  const rstd = new Float64Array(t);
  for (let r = 0; r < t; r++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i]!;
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[r * n + i]! - mean) ** 2;
    const rs = 1 / Math.sqrt(v / n + EPS);
    rstd[r] = rs;
    for (let i = 0; i < n; i++) {
      const xh = (x[r * n + i]! - mean) * rs;
      xhat[r * n + i] = xh;
      y[r * n + i] = xh * g[i]! + b[i]!;
    }
  }
  return { y, xhat, rstd };
}

/** dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), dxhat = dy·g. */
function layerNormBackward(dy: Float64Array, c: LnCache, t: number, n: number, g: Float32Array): Float64Array {
  const dx = new Float64Array(t * n);
  for (let r = 0; r < t; r++) {
    let m1 = 0;
    let m2 = 0;
    for (let i = 0; i < n; i++) {
      const dxh = dy[r * n + i]! * g[i]!;
      m1 += dxh;
      m2 += dxh * c.xhat[r * n + i]!;
    }
    m1 /= n;
    m2 /= n;
    for (let i = 0; i < n; i++) dx[r * n + i] = c.rstd[r]! * (dy[r * n + i]! * g[i]! - m1 - c.xhat[r * n + i]! * m2);
  }
  return dx;
}
