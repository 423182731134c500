/**
 * The TypeScript QR / SVD and the rank re-factoring against NumPy (test/fixtures/merges/svd-cases.json, from
 * tools/merges/build_merge_fixtures.py): singular values, the rank-r reconstruction and its relative error,
 * on both paths (factored QR + core SVD when R < min(d_in, d_out), dense SVD otherwise).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { matrix, multiply, qr, svd, transpose } from '../../src/registry/linalg.ts';
import { relativeError, truncateLayer } from '../../src/registry/low-rank.ts';
import { symmetricEigen } from '../../src/registry/symmetric-eigen.ts';
import { buildMerge } from '../../src/registry/merge-build.ts';
import { combineBindings } from '../../src/adapters/index.ts';

interface Case {
  d_in: number;
  d_out: number;
  R: number;
  rank: number;
  a: number[];
  b: number[];
  singular_values: number[];
  truncated: number[];
  rel_error: number;
}

const cases = async () => (JSON.parse(await readFile('test/fixtures/merges/svd-cases.json', 'utf8')) as { cases: Case[] }).cases;

const maxAbs = (x: ArrayLike<number>) => Array.from(x).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

test('Householder QR: Q has orthonormal columns, R is upper triangular, Q·R = A', () => {
  const a = matrix(7, 4, Array.from({ length: 28 }, (_, i) => Math.sin(3 * i + 1)));
  const { q, r } = qr(a);
  const qtq = multiply(transpose(q), q);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) assert.ok(Math.abs(qtq.data[i * 4 + j]! - (i === j ? 1 : 0)) < 1e-12);
  for (let i = 0; i < 4; i++) for (let j = 0; j < i; j++) assert.equal(r.data[i * 4 + j], 0);
  const back = multiply(q, r);
  assert.ok(maxAbs(back.data.map((v, i) => v - a.data[i]!)) < 1e-12);
});

test('Jacobi SVD: singular values match NumPy, U·S·Vᵀ = A (tall and wide)', async () => {
  for (const c of await cases()) {
    const m = multiply(matrix(c.d_in, c.R, c.a), matrix(c.R, c.d_out, c.b));
    const { u, s, v } = svd(m);
    const k = Math.min(c.d_in, c.d_out);
    const top = c.singular_values[0]!;
    for (let i = 0; i < Math.min(k, c.singular_values.length); i++) {
      assert.ok(Math.abs(s[i]! - c.singular_values[i]!) <= 1e-9 * top, `case ${c.d_in}×${c.d_out}: σ${i} ${s[i]} vs ${c.singular_values[i]}`);
    }
    let worst = 0;
    for (let i = 0; i < c.d_in; i++) {
      for (let j = 0; j < c.d_out; j++) {
        let x = 0;
        for (let t = 0; t < s.length; t++) x += u.data[i * u.cols + t]! * s[t]! * v.data[j * v.cols + t]!;
        worst = Math.max(worst, Math.abs(x - m.data[i * c.d_out + j]!));
      }
    }
    assert.ok(worst <= 1e-10 * top, `reconstruction off by ${worst}`);
  }
});

test('rank truncation equals NumPy’s truncated SVD on both paths, with the same relative error', async (t) => {
  let factored = 0;
  let dense = 0;
  for (const c of await cases()) {
    const tr = truncateLayer({ rank: c.R, a: Float32Array.from(c.a), b: Float32Array.from(c.b) }, c.rank);
    if (tr.dense) dense++;
    else factored++;
    assert.ok(tr.factors.rank <= c.rank);
    const got = multiply(matrix(c.d_in, tr.factors.rank, tr.factors.a), matrix(tr.factors.rank, c.d_out, tr.factors.b));
    const scale = maxAbs(c.truncated);
    const diff = maxAbs(got.data.map((v, i) => v - c.truncated[i]!));
    // Factors are stored as float32: the reconstruction is exact to float32 rounding of the factors.
    assert.ok(diff <= 1e-5 * scale, `case ${c.d_in}×${c.d_out} R=${c.R} r=${c.rank}: off by ${diff} (scale ${scale})`);
    assert.ok(Math.abs(relativeError(tr) - c.rel_error) <= 1e-9, `relative error ${relativeError(tr)} vs ${c.rel_error}`);
  }
  assert.ok(factored >= 2 && dense >= 1, `both paths exercised (factored ${factored}, dense ${dense})`);
  t.diagnostic(`factored cases ${factored}, dense cases ${dense}`);
});

test('symmetric eigen-decomposition (tridiagonal QL): G·v = λ·v, orthonormal vectors, descending values', () => {
  const n = 37;
  const x = matrix(n, 50, Array.from({ length: n * 50 }, (_, i) => Math.sin(0.7 * i + 1) + Math.cos(0.13 * i * i)));
  const g = multiply(x, transpose(x));
  const { values, vectors } = symmetricEigen(g);
  const top = values[0]!;
  for (let k = 1; k < n; k++) assert.ok(values[k - 1]! >= values[k]!, 'descending');
  const gv = multiply(g, vectors);
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) assert.ok(Math.abs(gv.data[i * n + k]! - values[k]! * vectors.data[i * n + k]!) <= 1e-11 * top);
  const vtv = multiply(transpose(vectors), vectors);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(vtv.data[i * n + j]! - (i === j ? 1 : 0)) < 1e-12);
  // The singular values of X (Jacobi, itself checked against NumPy above) are the square roots.
  const s = svd(x).s;
  for (let k = 0; k < n; k++) assert.ok(Math.abs(Math.sqrt(Math.max(0, values[k]!)) - s[k]!) <= 1e-9 * s[0]!);
});

test('dense truncation (Gram route) equals the exact Jacobi SVD of M on larger, wide and tall layers', () => {
  for (const [dIn, dOut, R, rank] of [[48, 96, 60, 7], [90, 40, 45, 12], [30, 30, 64, 30]] as const) {
    // Full-rank data (an LCG), so no singular value sits at rounding level where the two routes differ by design.
    let seed = dIn * 7919 + R;
    const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
    const a = Float32Array.from({ length: dIn * R }, next);
    const b = Float32Array.from({ length: R * dOut }, next);
    const tr = truncateLayer({ rank: R, a, b }, rank);
    assert.equal(tr.dense, true);
    const m = multiply(matrix(dIn, R, a), matrix(R, dOut, b));
    const { u, s, v } = svd(m);
    const want = new Float64Array(dIn * dOut);
    for (let i = 0; i < dIn; i++) for (let j = 0; j < dOut; j++) for (let t = 0; t < rank; t++) want[i * dOut + j]! += u.data[i * u.cols + t]! * s[t]! * v.data[j * v.cols + t]!;
    const got = multiply(matrix(dIn, tr.factors.rank, tr.factors.a), matrix(tr.factors.rank, dOut, tr.factors.b));
    const diff = maxAbs(got.data.map((x, i) => x - want[i]!));
    assert.ok(diff <= 1e-5 * maxAbs(want), `${dIn}×${dOut} R=${R} r=${rank}: off by ${diff}`);
    let tail = 0;
    let total = 0;
    s.forEach((x, i) => ((total += x * x), i >= rank && (tail += x * x)));
    assert.ok(Math.abs(relativeError(tr) - Math.sqrt(tail / total)) <= 1e-9, `relative error ${relativeError(tr)} vs ${Math.sqrt(tail / total)}`);
  }
});

test('buildMerge truncates on a worker thread: the event loop runs while it computes, and the result equals truncateLayer', async () => {
  let seed = 3;
  const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
  const layer = (dIn: number, dOut: number, R: number) => ({ rank: R, a: Float32Array.from({ length: dIn * R }, next), b: Float32Array.from({ length: R * dOut }, next) });
  const part = { binding: { key: 'p', layers: new Map([['l0', layer(120, 200, 130)], ['l1', layer(64, 40, 8)]]) }, weight: 0.5 };
  const copy = { a: Float32Array.from(part.binding.layers.get('l0')!.a), b: Float32Array.from(part.binding.layers.get('l0')!.b) };
  let done = false;
  const building = buildMerge('m', [part], 5).then((r) => ((done = true), r));
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false, 'a turn of the event loop passed while the merge was being built');
  const built = await building;
  const exact = combineBindings([part], 'm');
  for (const [name, f] of exact.layers) {
    const want = truncateLayer(f, 5);
    const got = built.binding.layers.get(name)!;
    assert.equal(got.rank, want.factors.rank);
    assert.deepEqual([...got.a], [...want.factors.a], `${name}: a as computed on this thread`);
    assert.deepEqual([...got.b], [...want.factors.b]);
    assert.equal(built.truncation!.modules[name], relativeError(want));
  }
  assert.deepEqual([...part.binding.layers.get('l0')!.a], [...copy.a], 'the sources’ factors are untouched (copied, not transferred)');
});
