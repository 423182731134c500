import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EditState } from '../../src/edits/edit-state.ts';
import { gpt2Specs, probe, probe2, reference, refParts, relErr } from './fixture.ts';

/** Seeded LCG, so the synthetic cases are the same every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** Gauss–Jordan solve of A·X = B (A n×n, B n×m) in float64, written independently of src/edits/linalg.ts. */
function solve(a: number[][], b: number[][]): number[][] {
  const n = a.length;
  const m = b[0]!.length;
  const aug = a.map((row, i) => [...row, ...b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(aug[r]![c]!) > Math.abs(aug[p]![c]!)) p = r;
    [aug[c], aug[p]] = [aug[p]!, aug[c]!];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = aug[r]![c]! / aug[c]![c]!;
      for (let k = c; k < n + m; k++) aug[r]![k]! -= f * aug[c]![k]!;
    }
  }
  return aug.map((row, i) => row.slice(n).map((v) => v / row[i]!));
}

test('the Woodbury recursion equals the batch least-squares solution of the whole stream', async () => {
  const r = rng(7);
  const dK = 6;
  const dV = 3;
  const w0 = Float32Array.from({ length: dK * dV }, r);
  // mom2 = B·Bᵀ/dK, SPD.
  const b = Array.from({ length: dK * dK }, r);
  const mom2 = new Float32Array(dK * dK);
  for (let i = 0; i < dK; i++) for (let j = 0; j < dK; j++) for (let k = 0; k < dK; k++) mom2[i * dK + j]! += (b[i * dK + k]! * b[j * dK + k]!) / dK;
  const lambda = 0.7;
  const mu = 1.3;
  const state = await EditState.initial([{ name: 'l', initializer: 'l.weight', dK, dV, w0, mom2 }], lambda, mu);
  const ks: number[][] = [];
  const vs: number[][] = [];
  for (let t = 1; t <= 5; t++) {
    const u = 1 + (t % 3);
    const keys = Float64Array.from({ length: u * dK }, r);
    const values = Float64Array.from({ length: u * dV }, () => 3 * r());
    state.apply(t, [{ layer: 'l', u, keys, values }]);
    for (let a = 0; a < u; a++) {
      ks.push([...keys.subarray(a * dK, (a + 1) * dK)]);
      vs.push([...values.subarray(a * dV, (a + 1) * dV)]);
    }
  }
  // Normal equations: (R + Σ k kᵀ) W = R W₀ + Σ k vᵀ with R = λ²I + μ²·mom2 (mom2 symmetric as stored).
  const R = Array.from({ length: dK }, (_, i) => Array.from({ length: dK }, (_, j) => (i === j ? lambda * lambda : 0) + mu * mu * mom2[i * dK + j]!));
  const A = R.map((row, i) => row.map((v, j) => v + ks.reduce((s, k) => s + k[i]! * k[j]!, 0)));
  const B = Array.from({ length: dK }, (_, i) =>
    Array.from({ length: dV }, (_, j) => R[i]!.reduce((s, v, m) => s + v * w0[m * dV + j]!, 0) + ks.reduce((s, k, a) => s + k[i]! * vs[a]![j]!, 0)),
  );
  const W = solve(A, B).flat();
  assert.ok(relErr(state.layers[0]!.w, W) < 1e-10, `W differs from least squares by ${relErr(state.layers[0]!.w, W)}`);
  // And C_t = (R + Σ k kᵀ)⁻¹.
  const Cinv = solve(A, A.map((_, i) => A.map((__, j) => (i === j ? 1 : 0)))).flat();
  assert.ok(relErr(state.layers[0]!.c, Cinv) < 1e-10);
});

test('C₀ and the recursion over the reference stream match NumPy (probes, rel 1e-9)', async () => {
  const specs = gpt2Specs(reference.layers);
  const state = await EditState.initial(specs, reference.lambda, reference.mu);
  for (const l of state.layers) {
    const f = reference.final[l.name]!;
    const e = relErr(probe2(f.probes, l.c, l.dK), f.c0_probe.flat());
    assert.ok(e < 1e-10, `${l.name} C₀ rel err ${e}`);
  }
  reference.edits.forEach((e, t) => state.apply(t + 1, refParts(e, reference.layers)));
  for (const [i, l] of state.layers.entries()) {
    const f = reference.final[l.name]!;
    const dw = new Float64Array(l.w.length);
    for (let k = 0; k < dw.length; k++) dw[k] = l.w[k]! - specs[i]!.w0[k]!;
    const eW = relErr(probe(f.probes, dw, l.dK, l.dV), f.dw_probe.flat());
    const eC = relErr(probe2(f.probes, l.c, l.dK), f.c_probe.flat());
    const diag = Array.from({ length: l.dK }, (_, k) => l.c[k * l.dK + k]!);
    const eD = relErr(diag, f.c_diag);
    assert.ok(eW < 1e-9 && eC < 1e-9 && eD < 1e-9, `${l.name}: ΔW ${eW}, C ${eC}, diag ${eD}`);
  }
});
