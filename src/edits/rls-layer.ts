/**
 * RLSEdit state of one edited linear map and its Woodbury update (../shared/METHODS.md, "RLSEdit").
 *
 * W ∈ R^{d_k×d_v} in ONNX orientation (row-major [d_in, d_out]: keys in, values out; y = k·W + b).
 * C ∈ R^{d_k×d_k} is the inverse regularised key covariance, C₀ = (λ²I + μ²K₀K₀ᵀ)⁻¹.
 * An edit brings u keys K ∈ R^{d_k×u} (passed as u rows of length d_k, i.e. Kᵀ row-major) and target
 * values V ∈ R^{u×d_v} (targets for Kᵀ·W, bias excluded):
 *
 *     F   = C_{t−1}·K                    [d_k, u]
 *     S   = I_u + Kᵀ·F                   [u, u]   (SPD; Cholesky)
 *     C_t = C_{t−1} − F·S⁻¹·Fᵀ           [d_k, d_k]
 *     W_t = W_{t−1} + C_t·K·(V − Kᵀ·W_{t−1})
 *
 * and C_t·K = F·S⁻¹ (substitute C_t: F − F·S⁻¹·(S − I) = F·S⁻¹), which saves one d_k²·u product.
 * Cost per edit O(d_k²·u + d_k·u·d_v), independent of how many edits came before.
 *
 * Precision: W and C are float64 (C accumulates thousands of rank-u downdates; float32 would lose its
 * positive-definiteness long before 10 000 edits); the served weight is Math.fround(W). Every loop runs in
 * a fixed order, so replaying the same (K, V) sequence reproduces W and C bit for bit.
 */
import { cholesky, choleskySolveInPlace } from './linalg.ts';

export class RlsLayer {
  constructor(
    /** HF module path, e.g. `transformer.h.2.mlp.c_proj`. */
    readonly name: string,
    /** The ONNX initializer holding W. */
    readonly initializer: string,
    readonly dK: number,
    readonly dV: number,
    /** W_t, row-major [d_k, d_v]. */
    readonly w: Float64Array,
    /** C_t, row-major [d_k, d_k]. */
    readonly c: Float64Array,
  ) {}

  /**
   * Applies one edit in place. `keys`: u·d_k (row j = key j), `values`: u·d_v (row j = target of key j).
   * Throws before touching W or C if S is not positive definite (it always is for finite keys and SPD C).
   */
  update(keys: Float64Array, values: Float64Array, u: number): void {
    const { dK, dV, c, w } = this;
    // Fᵀ [u, d_k]: row j = C·k_j (C is symmetric).
    const ft = new Float64Array(u * dK);
    for (let j = 0; j < u; j++) {
      const kj = j * dK;
      for (let i = 0; i < dK; i++) {
        const ci = i * dK;
        let s = 0;
        for (let m = 0; m < dK; m++) s += c[ci + m]! * keys[kj + m]!;
        ft[kj + i] = s;
      }
    }
    // S = I + Kᵀ·F [u, u].
    const sMat = new Float64Array(u * u);
    for (let a = 0; a < u; a++) {
      for (let b = 0; b < u; b++) {
        let s = a === b ? 1 : 0;
        for (let m = 0; m < dK; m++) s += keys[a * dK + m]! * ft[b * dK + m]!;
        sMat[a * u + b] = s;
      }
    }
    const l = cholesky(sMat, u);
    // X = S⁻¹·Fᵀ [u, d_k]; then C_t·K = F·S⁻¹ = Xᵀ (S symmetric).
    const x = Float64Array.from(ft);
    choleskySolveInPlace(l, u, x, dK);
    // R = V − Kᵀ·W_{t−1} [u, d_v], before W changes.
    const r = new Float64Array(u * dV);
    for (let a = 0; a < u; a++) {
      const ra = a * dV;
      for (let v = 0; v < dV; v++) r[ra + v] = values[ra + v]!;
      for (let i = 0; i < dK; i++) {
        const k = keys[a * dK + i]!;
        if (k === 0) continue;
        const wi = i * dV;
        for (let v = 0; v < dV; v++) r[ra + v]! -= k * w[wi + v]!;
      }
    }
    // C_t = C − F·X (F = (Fᵀ)ᵀ).
    for (let i = 0; i < dK; i++) {
      const ci = i * dK;
      for (let a = 0; a < u; a++) {
        const f = ft[a * dK + i]!;
        const xa = a * dK;
        for (let m = 0; m < dK; m++) c[ci + m]! -= f * x[xa + m]!;
      }
    }
    // W_t = W + Xᵀ·R.
    for (let i = 0; i < dK; i++) {
      const wi = i * dV;
      for (let a = 0; a < u; a++) {
        const g = x[a * dK + i]!;
        const ra = a * dV;
        for (let v = 0; v < dV; v++) w[wi + v]! += g * r[ra + v]!;
      }
    }
  }

  /** Kᵀ·W for one key [d_k] → [d_v]: the map's current output without bias. */
  apply(key: Float64Array): Float64Array {
    const out = new Float64Array(this.dV);
    for (let i = 0; i < this.dK; i++) {
      const k = key[i]!;
      const wi = i * this.dV;
      for (let v = 0; v < this.dV; v++) out[v]! += k * this.w[wi + v]!;
    }
    return out;
  }

  /** The served weight: W rounded to float32, same layout as the ONNX initializer. */
  weight32(): Float32Array {
    return Float32Array.from(this.w);
  }
}
