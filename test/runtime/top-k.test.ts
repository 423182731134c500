import assert from 'node:assert/strict';
import { test } from 'node:test';
import { descending, topKIndices } from '../../src/runtime/top-k.ts';
import { seededRandom } from '../../src/runtime/sampler.ts';

/** The reference: a full sort, larger first, ties by lower id. */
const sorted = (v: Float32Array) => Array.from(v.keys()).sort((a, b) => v[b]! - v[a]! || a - b);

test('topKIndices equals the first k of a full sort, ties included', () => {
  const r = seededRandom(3);
  for (const n of [1, 7, 100, 5000]) {
    // Rounded values make ties common.
    const v = Float32Array.from({ length: n }, () => Math.round(r() * 50) / 10);
    for (const k of [1, 2, 5, 40, n, n + 3]) assert.deepEqual(Array.from(topKIndices(v, k)), sorted(v).slice(0, k), `n ${n} k ${k}`);
  }
  assert.equal(topKIndices(new Float32Array([1, 2]), 0).length, 0);
});

test('descending yields every id in sorted order, lazily', () => {
  const r = seededRandom(9);
  const v = Float32Array.from({ length: 3000 }, () => Math.round(r() * 100) / 7);
  assert.deepEqual([...descending(v)], sorted(v));
  const it = descending(v);
  assert.equal(it.next().value, sorted(v)[0]);
});

test('-Infinity entries (banned tokens) come last; NaN never wins', () => {
  const v = new Float32Array([-Infinity, 2, NaN, 1]);
  assert.deepEqual(Array.from(topKIndices(v, 3)), [1, 3, 0]);
  assert.deepEqual([...descending(v)], [1, 3, 0]);
});
