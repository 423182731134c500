/**
 * Dense float64 linear algebra for RLSEdit: the small u×u Cholesky solve of each edit. Row-major matrices in Float64Array; loops run in a fixed order, so the
 * same inputs always give the same bits (replay depends on it).
 */

/** Lower Cholesky factor L of a symmetric positive-definite n×n matrix S (S = L·Lᵀ). Throws if not SPD. */
export function cholesky(s: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = s[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= l[i * n + k]! * l[j * n + k]!;
      if (i === j) {
        if (!(sum > 0)) throw new Error(`matrix is not positive definite (pivot ${i}: ${sum})`);
        l[i * n + i] = Math.sqrt(sum);
      } else {
        l[i * n + j] = sum / l[j * n + j]!;
      }
    }
  }
  return l;
}

/**
 * Solves S·X = B in place for X, with S = L·Lᵀ (L from `cholesky`), B n×m row-major: forward substitution
 * with L, then back substitution with Lᵀ, one column block at a time.
 */
export function choleskySolveInPlace(l: Float64Array, n: number, b: Float64Array, m: number): void {
  for (let i = 0; i < n; i++) {
    const row = i * m;
    for (let k = 0; k < i; k++) {
      const f = l[i * n + k]!;
      if (f === 0) continue;
      const rk = k * m;
      for (let c = 0; c < m; c++) b[row + c]! -= f * b[rk + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[row + c]! /= d;
  }
  for (let i = n - 1; i >= 0; i--) {
    const row = i * m;
    for (let k = i + 1; k < n; k++) {
      const f = l[k * n + i]!;
      if (f === 0) continue;
      const rk = k * m;
      for (let c = 0; c < m; c++) b[row + c]! -= f * b[rk + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < m; c++) b[row + c]! /= d;
  }
}
