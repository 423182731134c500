/**
 * Float64 dense kernels of the Llama upper stack (llama-upper.ts): bias-free linear maps, RMSNorm and the
 * LM-head NLL, each with the backward pass the value search needs (gradients with respect to the input only;
 * the weights are constants). Weights are float32 ONNX initializers in graph orientation [d_in, d_out].
 */

/**
 * Columns of y handled per pass in matmul: a tile of y rows (TILE float64 = 16 KiB) stays in L1 while four
 * weight rows stream past it.
 */
const TILE = 2048;

/**
 * y = x·W for x [t, a], W [a, b] row-major → [t, b] (added into `into` when given).
 * W is used as stored (no transposed copy: SmolLM2's LM head alone is 113 MB): four rows of W are combined per
 * pass over a tile of y, y[r, j] += x[r,i]·W[i,j] + … + x[r,i+3]·W[i+3,j], so each y element is loaded and
 * stored once per four weight rows, and each weight tile is reused by every row of x while it is in cache.
 */
export function matmul(x: Float64Array, t: number, a: number, b: number, w: Float32Array, into?: Float64Array): Float64Array {
  const y = into ?? new Float64Array(t * b);
  for (let j0 = 0; j0 < b; j0 += TILE) {
    const j1 = Math.min(b, j0 + TILE);
    let i = 0;
    for (; i + 4 <= a; i += 4) {
      const w0 = i * b;
      const w1 = w0 + b;
      const w2 = w1 + b;
      const w3 = w2 + b;
      for (let r = 0; r < t; r++) {
        const xr = r * a + i;
        const x0 = x[xr]!;
        const x1 = x[xr + 1]!;
        const x2 = x[xr + 2]!;
        const x3 = x[xr + 3]!;
        const yr = r * b;
        for (let j = j0; j < j1; j++) y[yr + j]! += x0 * w[w0 + j]! + x1 * w[w1 + j]! + x2 * w[w2 + j]! + x3 * w[w3 + j]!;
      }
    }
    for (; i < a; i++) {
      const wi = i * b;
      for (let r = 0; r < t; r++) {
        const xi = x[r * a + i]!;
        const yr = r * b;
        for (let j = j0; j < j1; j++) y[yr + j]! += xi * w[wi + j]!;
      }
    }
  }
  return y;
}

/**
 * dx = dy·Wᵀ for y = x·W, dy [t, b], W [a, b] → [t, a]; added into `into` when given. Dot form against W's
 * rows (contiguous): four rows of W per pass share each load of dy, four independent sums hide the add latency.
 */
export function matmulBackward(dy: Float64Array, t: number, a: number, b: number, w: Float32Array, into?: Float64Array): Float64Array {
  const dx = into ?? new Float64Array(t * a);
  let i = 0;
  for (; i + 4 <= a; i += 4) {
    const w0 = i * b;
    const w1 = w0 + b;
    const w2 = w1 + b;
    const w3 = w2 + b;
    for (let r = 0; r < t; r++) {
      const dr = r * b;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < b; j++) {
        const g = dy[dr + j]!;
        s0 += g * w[w0 + j]!;
        s1 += g * w[w1 + j]!;
        s2 += g * w[w2 + j]!;
        s3 += g * w[w3 + j]!;
      }
      const o = r * a + i;
      dx[o]! += s0;
      dx[o + 1]! += s1;
      dx[o + 2]! += s2;
      dx[o + 3]! += s3;
    }
  }
  for (; i < a; i++) {
    const wi = i * b;
    for (let r = 0; r < t; r++) {
      const dr = r * b;
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
 * Only the target rows go through the head, all of them in one pass over W_lm (forward and backward), since
 * streaming W_lm (D·V floats) is the cost.
 */
export function headNll(x: Float64Array, D: number, V: number, lm: Float32Array, targets: readonly { pos: number; token: number }[], t: number, grad: boolean): { nll: number; dx: Float64Array } {
  const dx = new Float64Array(grad ? t * D : 0);
  const n = targets.length;
  const rows = new Float64Array(n * D);
  targets.forEach(({ pos }, r) => rows.set(x.subarray(pos * D, (pos + 1) * D), r * D));
  const logits = matmul(rows, n, D, V, lm);
  let nll = 0;
  for (const [r, { token }] of targets.entries()) {
    const o = r * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[o + v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[o + v]! - max);
    const lse = max + Math.log(sum);
    nll += (lse - logits[o + token]!) / n;
    if (!grad) continue;
    for (let v = 0; v < V; v++) logits[o + v] = Math.exp(logits[o + v]! - lse) / n;
    logits[o + token]! -= 1 / n;
  }
  if (!grad) return { nll, dx };
  const dRows = matmulBackward(logits, n, D, V, lm);
  targets.forEach(({ pos }, r) => {
    for (let i = 0; i < D; i++) dx[pos * D + i]! += dRows[r * D + i]!;
  });
  return { nll, dx };
}
