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
