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
 * otherwise M [d_in, d_out] is formed and decomposed directly. The relative Frobenius error is exact from the
 * singular values: ‖M − M_r‖_F / ‖M‖_F = √(Σ_{i>r} s_i²) / √(Σ s_i²).
 */
import type { LayerFactors } from '../runtime/types.ts';
import { matrix, multiply, qr, svd, transpose, type Matrix } from './linalg.ts';

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
  let left: Matrix; // [d_in, k]: columns are left singular vectors of M
  let s: Float64Array;
  let right: Matrix; // [d_out, k]: right singular vectors
  if (!dense) {
    const qa = qr(matrix(dIn, R, f.a));
    const qb = qr(transpose(matrix(R, dOut, f.b)));
    const core = svd(multiply(qa.r, transpose(qb.r)));
    left = multiply(qa.q, core.u);
    right = multiply(qb.q, core.v);
    s = core.s;
  } else {
    const full = svd(multiply(matrix(dIn, R, f.a), matrix(R, dOut, f.b)));
    left = full.u;
    right = full.v;
    s = full.s;
  }
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
