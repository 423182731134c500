/**
 * Small dense kernels for the value search (Gpt2Upper), float64 activations against float32 weights.
 *
 * Every product is written as rows of x dotted with rows of a matrix ("dot form"): the inner loop then
 * keeps its sum in a register and reads two contiguous arrays. Forward products use a transposed copy of the
 * weight, backward products the weight as stored, so both are dot form. Four output columns share each load
 * of x, and four independent sums hide the add latency. (Measured only together with the row caching of
 * gpt2-upper.ts: BENCHMARKS.md, "Knowledge edits".)
 */

/**
 * out[r, j] = bias[j] + Σ_i x[r, i]·m[j, i] for r < n, j < outDim.
 * x: rows of length k starting at xOff; m: [outDim, k] row-major; out: rows of length outDim at outOff.
 */
export function dotRows(
  x: Float64Array,
  xOff: number,
  n: number,
  k: number,
  m: Float32Array | Float64Array,
  outDim: number,
  out: Float64Array,
  outOff: number,
  bias?: Float32Array,
): void {
  for (let r = 0; r < n; r++) {
    const xr = xOff + r * k;
    const or = outOff + r * outDim;
    let j = 0;
    for (; j + 4 <= outDim; j += 4) {
      const m0 = j * k;
      const m1 = m0 + k;
      const m2 = m1 + k;
      const m3 = m2 + k;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let i = 0; i < k; i++) {
        const xi = x[xr + i]!;
        s0 += xi * m[m0 + i]!;
        s1 += xi * m[m1 + i]!;
        s2 += xi * m[m2 + i]!;
        s3 += xi * m[m3 + i]!;
      }
      if (bias) {
        s0 += bias[j]!;
        s1 += bias[j + 1]!;
        s2 += bias[j + 2]!;
        s3 += bias[j + 3]!;
      }
      out[or + j] = s0;
      out[or + j + 1] = s1;
      out[or + j + 2] = s2;
      out[or + j + 3] = s3;
    }
    for (; j < outDim; j++) {
      const mj = j * k;
      let s = bias ? bias[j]! : 0;
      for (let i = 0; i < k; i++) s += x[xr + i]! * m[mj + i]!;
      out[or + j] = s;
    }
  }
}

/** [a, b] row-major → [b, a] row-major (float32 kept: the weights are float32). */
export function transpose(w: Float32Array, a: number, b: number): Float32Array {
  const t = new Float32Array(a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) t[j * a + i] = w[i * b + j]!;
  return t;
}

export interface LnCache {
  y: Float64Array;
  xhat: Float64Array;
  rstd: Float64Array;
}

export function lnCache(rows: number, n: number): LnCache {
  return { y: new Float64Array(rows * n), xhat: new Float64Array(rows * n), rstd: new Float64Array(rows) };
}

/** y = (x − mean)/√(var + eps)·g + b per row of x [rows, n] (at xOff), into c. */
export function layerNorm(x: Float64Array, xOff: number, rows: number, n: number, g: Float32Array, b: Float32Array, eps: number, c: LnCache): void {
  for (let r = 0; r < rows; r++) {
    const o = xOff + r * n;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i]!;
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[o + i]! - mean) ** 2;
    const rs = 1 / Math.sqrt(v / n + eps);
    c.rstd[r] = rs;
    for (let i = 0; i < n; i++) {
      const xh = (x[o + i]! - mean) * rs;
      c.xhat[r * n + i] = xh;
      c.y[r * n + i] = xh * g[i]! + b[i]!;
    }
  }
}

/** dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), dxhat = dy·g; dy, dx [rows, n]. */
export function layerNormBackward(dy: Float64Array, c: LnCache, rows: number, n: number, g: Float32Array, dx: Float64Array): void {
  for (let r = 0; r < rows; r++) {
    let m1 = 0;
    let m2 = 0;
    for (let i = 0; i < n; i++) {
      const dxh = dy[r * n + i]! * g[i]!;
      m1 += dxh;
      m2 += dxh * c.xhat[r * n + i]!;
    }
    m1 /= n;
    m2 /= n;
    const rs = c.rstd[r]!;
    for (let i = 0; i < n; i++) dx[r * n + i] = rs * (dy[r * n + i]! * g[i]! - m1 - c.xhat[r * n + i]! * m2);
  }
}
