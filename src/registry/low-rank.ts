/**
 * Re-factoring a merged delta to a lower rank (optional step of a named merge, see merges.ts).
 *
 * One layer's delta is M = a·b with a [d_in, R], b [R, d_out] (the delta path's layout: y += x·a·b).
 * The best rank-r approximation (Eckart–Young) is the truncated SVD of M. When R < min(d_in, d_out), M is
 * never formed:
 *
 *     a = Q_a·R_a (thin QR, Q_a [d_in, R]),  bᵀ = Q_b·R_b (Q_b [d_out, R])
 *     M = Q_a·(R_a·R_bᵀ)·Q_bᵀ,  core C = R_a·R_bᵀ [R, R] = U·S·Vᵀ
 *     M = (Q_a·U)·S·(Q_b·V)ᵀ   →   a' = Q_a·U_r·√S_r [d_in, r],  b' = √S_r·(Q_b·V_r)ᵀ [r, d_out]
 *
 * otherwise (R ≥ min(d_in, d_out), "dense") through the Gram matrix of the smaller side, still without M:
 *
 *     d_in ≤ d_out:  G = M·Mᵀ = a·(b·bᵀ)·aᵀ [d_in, d_in] = U·Λ·Uᵀ,  s = √λ,
 *                    a' = U_r·√S_r,  b' = S_r^(-1/2)·U_rᵀ·M = S_r^(-1/2)·(U_rᵀ·a)·b
 *     d_out < d_in:  G = Mᵀ·M = bᵀ·(aᵀ·a)·b [d_out, d_out] = V·Λ·Vᵀ,
 *                    b' = √S_r·V_rᵀ,  a' = M·V_r·S_r^(-1/2) = a·(b·V_r)·S_r^(-1/2)
 *
 * (symmetric-eigen.ts: tridiagonalisation + QL, O(n³)); one-sided Jacobi on M itself (svd below) needs many
 * O(n²·m) sweeps — minutes in JavaScript for a 576×1536 layer. Squaring M costs accuracy only in singular
 * values below √(n·ε)·s_max, which are treated as zero (eigenvalues at rounding level, possibly negative); the
 * kept directions and the error are exact to float64 rounding otherwise (tested against NumPy and against
 * the Jacobi path). The relative Frobenius error is exact from the singular values:
 * ‖M − M_r‖_F / ‖M‖_F = √(Σ_{i>r} s_i²) / √(Σ s_i²).
 */
import type { LayerFactors } from '../runtime/types.ts';
import { matrix, multiply, multiplyTransposed, qr, svd, transpose, type Matrix } from './linalg.ts';
import { symmetricEigen } from './symmetric-eigen.ts';

export interface Truncated {
  factors: LayerFactors;
  /** Σ s_i² dropped and kept in all, for the overall error. */
  tailEnergy: number;
  totalEnergy: number;
  /** Whether M was formed (R ≥ min(d_in, d_out)). */
  dense: boolean;
}

export function relativeError(t: Pick<Truncated, 'tailEnergy' | 'totalEnergy'>): number {
  return t.totalEnergy > 0 ? Math.sqrt(t.tailEnergy / t.totalEnergy) : 0;
}

/** Best rank-≤`rank` factors of one layer's a·b. `dIn`, `dOut` from a.length / R and b.length / R. */
export function truncateLayer(f: LayerFactors, rank: number): Truncated {
  const R = f.rank;
  const dIn = f.a.length / R;
  const dOut = f.b.length / R;
  const dense = R >= Math.min(dIn, dOut);
  if (dense) return truncateGram(matrix(dIn, R, f.a), matrix(R, dOut, f.b), rank);
  const qa = qr(matrix(dIn, R, f.a));
  const qb = qr(transpose(matrix(R, dOut, f.b)));
  const core = svd(multiply(qa.r, transpose(qb.r)));
  const left = multiply(qa.q, core.u); // [d_in, R]: left singular vectors of M
  const right = multiply(qb.q, core.v); // [d_out, R]: right singular vectors
  const s = core.s;
  let total = 0;
  for (const x of s) total += x * x;
  // Zero singular values carry nothing: dropping them keeps the result exact and the rank honest.
  let r = Math.min(rank, s.length);
  while (r > 0 && !(s[r - 1]! > 0)) r--;
  let kept = 0;
  for (let i = 0; i < r; i++) kept += s[i]! ** 2;
  const a = new Float32Array(dIn * r);
  const b = new Float32Array(r * dOut);
  const k = left.cols;
  for (let j = 0; j < r; j++) {
    const root = Math.sqrt(s[j]!);
    for (let i = 0; i < dIn; i++) a[i * r + j] = left.data[i * k + j]! * root;
    for (let o = 0; o < dOut; o++) b[j * dOut + o] = right.data[o * right.cols + j]! * root;
  }
  return { factors: { rank: r, a, b }, tailEnergy: Math.max(0, total - kept), totalEnergy: total, dense };
}

/** Singular values below √(n·ε)·s_max are rounding noise of the Gram route: zero. */
const gramFloor = (n: number) => n * 2 ** -52;

/** The dense case through the Gram matrix of the smaller side (formulas in the file comment). */
function truncateGram(a: Matrix, b: Matrix, rank: number): Truncated {
  const dIn = a.rows;
  const dOut = b.cols;
  const leftSide = dIn <= dOut;
  // G = a·(b·bᵀ)·aᵀ or bᵀ·(aᵀ·a)·b, via the R×R inner product (never M itself); the symmetric products
  // compute one triangle, so G is exactly symmetric as the reduction assumes.
  let g: Matrix;
  if (leftSide) {
    const t = multiply(a, multiplyTransposed(b, b, true)); // [d_in, R]
    g = multiplyTransposed(t, a, true);
  } else {
    const at = transpose(a); // [R, d_in]
    const t = multiply(multiplyTransposed(at, at, true), b); // [R, d_out]
    g = multiplyTransposed(transpose(b), transpose(t), true);
  }
  const n = g.rows;
  const { values, vectors } = symmetricEigen(g);
  const floor = Math.max(0, values[0]!) * gramFloor(n);
  const lambda = values.map((v) => (v > floor ? v : 0));
  let total = 0;
  for (const v of lambda) total += v;
  let r = Math.min(rank, n);
  while (r > 0 && !(lambda[r - 1]! > 0)) r--;
  let tail = 0;
  for (let i = r; i < n; i++) tail += lambda[i]!;
  // W = the r kept eigenvectors [n, r]; the other side's vectors follow from M (scaled by 1/s).
  const w = matrix(n, r);
  for (let i = 0; i < n; i++) for (let j = 0; j < r; j++) w.data[i * r + j] = vectors.data[i * n + j]!;
  const other = leftSide ? multiply(multiply(transpose(w), a), b) : multiply(a, multiply(b, w)); // [r, d_out] or [d_in, r]
  const out = { a: new Float32Array(dIn * r), b: new Float32Array(r * dOut) };
  for (let j = 0; j < r; j++) {
    const sv = Math.sqrt(lambda[j]!);
    const root = Math.sqrt(sv);
    if (leftSide) {
      for (let i = 0; i < dIn; i++) out.a[i * r + j] = w.data[i * r + j]! * root;
      for (let o = 0; o < dOut; o++) out.b[j * dOut + o] = other.data[j * dOut + o]! / root;
    } else {
      for (let o = 0; o < dOut; o++) out.b[j * dOut + o] = w.data[o * r + j]! * root;
      for (let i = 0; i < dIn; i++) out.a[i * r + j] = other.data[i * r + j]! / root;
    }
  }
  return { factors: { rank: r, ...out }, tailEnergy: tail, totalEnergy: total, dense: true };
}
