/**
 * The small dense linear algebra that merge truncation needs, in float64: a thin Householder QR and a
 * one-sided (Hestenes) Jacobi SVD. Matrices are row-major `Float64Array`s with explicit shapes.
 * Checked against NumPy in test/registry/linalg.test.ts (fixture from tools/merges/build_merge_fixtures.py).
 */

export interface Matrix {
  rows: number;
  cols: number;
  /** Row-major, length rows·cols. */
  data: Float64Array;
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  const m = { rows, cols, data: new Float64Array(rows * cols) };
  if (data) {
    if (data.length !== rows * cols) throw new Error(`matrix ${rows}×${cols} needs ${rows * cols} values, got ${data.length}`);
    m.data.set(data);
  }
  return m;
}

export function transpose(m: Matrix): Matrix {
  const t = matrix(m.cols, m.rows);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) t.data[j * m.rows + i] = m.data[i * m.cols + j]!;
  return t;
}

/** C = A·B  ([m, k]·[k, n] → [m, n]), i-k-j loop order so the inner loop walks rows contiguously. */
export function multiply(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) throw new Error(`cannot multiply ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const c = matrix(a.rows, b.cols);
  const n = b.cols;
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k]!;
      if (aik === 0) continue;
      const bo = k * n;
      const co = i * n;
      for (let j = 0; j < n; j++) c.data[co + j]! += aik * b.data[bo + j]!;
    }
  }
  return c;
}

/**
 * Thin QR of A [m, n], m ≥ n, by Householder reflections: A = Q·R with Q [m, n] (orthonormal columns) and
 * R [n, n] upper triangular. Reflector k: v = x + sign(x₀)‖x‖e₀ on rows k…m−1 of column k, H = I − 2vvᵀ/vᵀv.
 */
export function qr(a: Matrix): { q: Matrix; r: Matrix } {
  const { rows: m, cols: n } = a;
  if (m < n) throw new Error(`qr needs rows ≥ cols, got ${m}×${n}`);
  const w = Float64Array.from(a.data);
  const vs: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    const v = new Float64Array(m - k);
    let norm = 0;
    for (let i = k; i < m; i++) norm += w[i * n + k]! ** 2;
    norm = Math.sqrt(norm);
    const x0 = w[k * n + k]!;
    for (let i = k; i < m; i++) v[i - k] = w[i * n + k]!;
    v[0] = x0 + (x0 >= 0 ? norm : -norm);
    let vv = 0;
    for (const x of v) vv += x * x;
    vs.push(v);
    if (vv === 0) continue; // column already zero below the diagonal: H = I
    for (let j = k; j < n; j++) {
      let dot = 0;
      for (let i = k; i < m; i++) dot += v[i - k]! * w[i * n + j]!;
      const f = (2 * dot) / vv;
      for (let i = k; i < m; i++) w[i * n + j]! -= f * v[i - k]!;
    }
  }
  const r = matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) r.data[i * n + j] = w[i * n + j]!;
  // Q = H₀·H₁·…·H_{n−1} applied to the first n columns of I, last reflector first.
  const q = matrix(m, n);
  for (let i = 0; i < n; i++) q.data[i * n + i] = 1;
  for (let k = n - 1; k >= 0; k--) {
    const v = vs[k]!;
    let vv = 0;
    for (const x of v) vv += x * x;
    if (vv === 0) continue;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = k; i < m; i++) dot += v[i - k]! * q.data[i * n + j]!;
      const f = (2 * dot) / vv;
      for (let i = k; i < m; i++) q.data[i * n + j]! -= f * v[i - k]!;
    }
  }
  return { q, r };
}

export interface Svd {
  /** [m, k] left singular vectors (k = min(m, n)). */
  u: Matrix;
  /** k singular values, descending. */
  s: Float64Array;
  /** [n, k] right singular vectors: A = U·diag(s)·Vᵀ. */
  v: Matrix;
}

/**
 * Thin SVD by one-sided Jacobi: rotate column pairs of A (and of V = I) until all columns are mutually
 * orthogonal; then σ_j = ‖a_j‖ and u_j = a_j/σ_j. For m < n it factors Aᵀ and swaps U and V.
 * Rotation for columns p, q: α = ‖a_p‖², β = ‖a_q‖², γ = a_p·a_q, ζ = (β − α)/2γ,
 * t = sign(ζ)/(|ζ| + √(1 + ζ²)), c = 1/√(1 + t²), s = c·t.
 */
export function svd(a: Matrix, maxSweeps = 60): Svd {
  if (a.rows < a.cols) {
    const t = svd(transpose(a), maxSweeps);
    return { u: t.v, s: t.s, v: t.u };
  }
  const { rows: m, cols: n } = a;
  // Column-major copies: every rotation touches two whole columns.
  const cols = Array.from({ length: n }, (_, j) => {
    const c = new Float64Array(m);
    for (let i = 0; i < m; i++) c[i] = a.data[i * n + j]!;
    return c;
  });
  const vcols = Array.from({ length: n }, (_, j) => {
    const c = new Float64Array(n);
    c[j] = 1;
    return c;
  });
  const eps = 1e-15;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const ap = cols[p]!;
        const aq = cols[q]!;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          alpha += ap[i]! * ap[i]!;
          beta += aq[i]! * aq[i]!;
          gamma += ap[i]! * aq[i]!;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(ap, aq, c, s);
        rotate(vcols[p]!, vcols[q]!, c, s);
      }
    }
    if (!rotated) break;
  }
  const sigma = cols.map((c) => Math.sqrt(c.reduce((acc, x) => acc + x * x, 0)));
  const order = [...sigma.keys()].sort((x, y) => sigma[y]! - sigma[x]!);
  const u = matrix(m, n);
  const v = matrix(n, n);
  const s = new Float64Array(n);
  order.forEach((j, k) => {
    s[k] = sigma[j]!;
    const inv = sigma[j]! > 0 ? 1 / sigma[j]! : 0;
    for (let i = 0; i < m; i++) u.data[i * n + k] = cols[j]![i]! * inv;
    for (let i = 0; i < n; i++) v.data[i * n + k] = vcols[j]![i]!;
  });
  return { u, s, v };
}

function rotate(x: Float64Array, y: Float64Array, c: number, s: number): void {
  for (let i = 0; i < x.length; i++) {
    const xi = x[i]!;
    const yi = y[i]!;
    x[i] = c * xi - s * yi;
    y[i] = s * xi + c * yi;
  }
}

/**
 * C = A·Bᵀ ([m, k]·[n, k]ᵀ → [m, n]) as row-by-row dot products: both operands are walked contiguously.
 * `symmetric` (the caller knows C = Cᵀ, e.g. X·Xᵀ): only j ≤ i is computed and mirrored — half the work.
 */
export function multiplyTransposed(a: Matrix, b: Matrix, symmetric = false): Matrix {
  if (a.cols !== b.cols) throw new Error(`cannot multiply ${a.rows}×${a.cols} by (${b.rows}×${b.cols})ᵀ`);
  const k = a.cols;
  const c = matrix(a.rows, b.rows);
  const n = b.rows;
  const k4 = k - (k % 4);
  for (let i = 0; i < a.rows; i++) {
    const ai = a.data.subarray(i * k, (i + 1) * k);
    for (let j = 0; j < (symmetric ? i + 1 : n); j++) {
      const bj = b.data.subarray(j * k, (j + 1) * k);
      // Four partial sums: independent additions the CPU can overlap.
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let t = 0;
      for (; t < k4; t += 4) {
        s0 += ai[t]! * bj[t]!;
        s1 += ai[t + 1]! * bj[t + 1]!;
        s2 += ai[t + 2]! * bj[t + 2]!;
        s3 += ai[t + 3]! * bj[t + 3]!;
      }
      for (; t < k; t++) s0 += ai[t]! * bj[t]!;
      const v = s0 + s1 + s2 + s3;
      c.data[i * n + j] = v;
      if (symmetric) c.data[j * n + i] = v;
    }
  }
  return c;
}
