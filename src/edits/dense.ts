/**
 * Float64 dense kernels of the Llama upper stack (llama-upper.ts): bias-free linear maps, RMSNorm and the
 * LM-head NLL, each with the backward pass the value search needs (gradients with respect to the input only;
 * the weights are constants). Weights are float32 ONNX initializers in graph orientation [d_in, d_out].
 */

/** y = x·W for x [t, a], W [a, b] row-major → [t, b]. */
export function matmul(x: Float64Array, t: number, a: number, b: number, w: Float32Array): Float64Array {
  const y = new Float64Array(t * b);
  for (let r = 0; r < t; r++) {
    const yr = r * b;
    for (let i = 0; i < a; i++) {
      const xi = x[r * a + i]!;
      if (xi === 0) continue;
      const wi = i * b;
      for (let j = 0; j < b; j++) y[yr + j]! += xi * w[wi + j]!;
    }
  }
  return y;
}

/** dx = dy·Wᵀ for y = x·W, dy [t, b], W [a, b] → [t, a]; added into `into` when given. */
export function matmulBackward(dy: Float64Array, t: number, a: number, b: number, w: Float32Array, into?: Float64Array): Float64Array {
  const dx = into ?? new Float64Array(t * a);
  for (let r = 0; r < t; r++) {
    const dr = r * b;
    for (let i = 0; i < a; i++) {
      const wi = i * b;
      let s = 0;
      for (let j = 0; j < b; j++) s += dy[dr + j]! * w[wi + j]!;
      dx[r * a + i]! += s;
    }
  }
  return dx;
}

export interface RmsCache {
  x: Float64Array;
  /** r = (mean(x²) + ε)^(-1/2) per row. */
  r: Float64Array;
}

/** y = g ⊙ x·r per row of x [t, n] (HF LlamaRMSNorm). */
export function rmsNorm(x: Float64Array, t: number, n: number, g: Float32Array, eps: number): { y: Float64Array; cache: RmsCache } {
  const y = new Float64Array(t * n);
  const r = new Float64Array(t);
  for (let row = 0; row < t; row++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[row * n + i]! ** 2;
    const rr = 1 / Math.sqrt(ss / n + eps);
    r[row] = rr;
    for (let i = 0; i < n; i++) y[row * n + i] = g[i]! * x[row * n + i]! * rr;
  }
  return { y, cache: { x, r } };
}

/** dx_j = r·g_j·dy_j − x_j·r³/n · Σ_i dy_i·g_i·x_i. */
export function rmsNormBackward(dy: Float64Array, c: RmsCache, t: number, n: number, g: Float32Array): Float64Array {
  const dx = new Float64Array(t * n);
  for (let row = 0; row < t; row++) {
    const o = row * n;
    const r = c.r[row]!;
    let s = 0;
    for (let i = 0; i < n; i++) s += dy[o + i]! * g[i]! * c.x[o + i]!;
    const k = (r * r * r * s) / n;
    for (let i = 0; i < n; i++) dx[o + i] = r * g[i]! * dy[o + i]! - c.x[o + i]! * k;
  }
  return dx;
}

/**
 * Mean NLL of `targets` under logits = x·W_lm (x [t, D] final-normed states, W_lm [D, V]); with `grad`,
 * ∂NLL/∂x [t, D] (rows of non-target positions stay 0): ∂/∂logits = (softmax − onehot)/n, ∂/∂x = that·W_lmᵀ.
 */
export function headNll(x: Float64Array, D: number, V: number, lm: Float32Array, targets: readonly { pos: number; token: number }[], t: number, grad: boolean): { nll: number; dx: Float64Array } {
  const dx = new Float64Array(grad ? t * D : 0);
  let nll = 0;
  const n = targets.length;
  for (const { pos, token } of targets) {
    const logits = new Float64Array(V);
    const row = pos * D;
    for (let i = 0; i < D; i++) {
      const xi = x[row + i]!;
      const wi = i * V;
      for (let v = 0; v < V; v++) logits[v]! += xi * lm[wi + v]!;
    }
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[v]! - max);
    const lse = max + Math.log(sum);
    nll += (lse - logits[token]!) / n;
    if (!grad) continue;
    for (let v = 0; v < V; v++) logits[v] = Math.exp(logits[v]! - lse) / n;
    logits[token]! -= 1 / n;
    for (let i = 0; i < D; i++) {
      const wi = i * V;
      let s = 0;
      for (let v = 0; v < V; v++) s += logits[v]! * lm[wi + v]!;
      dx[row + i]! += s;
    }
  }
  return { nll, dx };
}
