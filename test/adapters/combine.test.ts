import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combineBindings, combinationKey } from '../../src/adapters/combine.ts';
import type { DeltaBinding, LayerFactors } from '../../src/runtime/types.ts';
import { assertClose, denseOfFactors, rand, rng } from './helpers.ts';

const r = rng(3);
const f = (rank: number, dIn: number, dOut: number): LayerFactors => ({ rank, a: rand(dIn * rank, r), b: rand(rank * dOut, r) });

test('combination is exact: dense(a′·b′) = Σ w_i·dense(a_i·b_i), including layers only some inputs touch', () => {
  const one: DeltaBinding = { key: 'comedy', layers: new Map([['q', f(2, 6, 5)], ['v', f(3, 6, 4)]]) };
  const two: DeltaBinding = { key: 'tragedy', layers: new Map([['q', f(4, 6, 5)], ['o', f(1, 5, 6)]]) };
  const parts = [{ binding: one, weight: 0.7 }, { binding: two, weight: -0.5 }];
  const mix = combineBindings(parts);
  assert.equal(mix.key, 'mix(comedy*0.7+tragedy*-0.5)');
  assert.equal(combinationKey(parts), mix.key);
  assert.deepEqual([...mix.layers.keys()], ['q', 'v', 'o']);
  assert.equal(mix.layers.get('q')!.rank, 6);
  const expectQ = denseOfFactors(one.layers.get('q')!, 6, 5).map((v, i) => 0.7 * v - 0.5 * denseOfFactors(two.layers.get('q')!, 6, 5)[i]!);
  assertClose(denseOfFactors(mix.layers.get('q')!, 6, 5), expectQ, 1e-6);
  assertClose(denseOfFactors(mix.layers.get('v')!, 6, 4), denseOfFactors(one.layers.get('v')!, 6, 4).map((v) => 0.7 * v), 1e-6);
  assertClose(denseOfFactors(mix.layers.get('o')!, 5, 6), denseOfFactors(two.layers.get('o')!, 5, 6).map((v) => -0.5 * v), 1e-6);
});

test('averaging A and B separately would not be the same (guards the method)', () => {
  const x: DeltaBinding = { key: 'x', layers: new Map([['q', f(2, 3, 3)]]) };
  const y: DeltaBinding = { key: 'y', layers: new Map([['q', f(2, 3, 3)]]) };
  const xf = x.layers.get('q')!;
  const yf = y.layers.get('q')!;
  const naive: LayerFactors = { rank: 2, a: xf.a.map((v, i) => 0.5 * (v + yf.a[i]!)), b: xf.b.map((v, i) => 0.5 * (v + yf.b[i]!)) };
  const exact = combineBindings([{ binding: x, weight: 0.5 }, { binding: y, weight: 0.5 }]).layers.get('q')!;
  const d = denseOfFactors(naive, 3, 3).map((v, i) => Math.abs(v - denseOfFactors(exact, 3, 3)[i]!));
  assert.ok(Math.max(...d) > 1e-3);
});

test('zero weights and rank-0 layers drop out; mismatched dims throw', () => {
  const x: DeltaBinding = { key: 'x', layers: new Map([['q', f(2, 3, 3)], ['z', { rank: 0, a: new Float32Array(0), b: new Float32Array(0) }]]) };
  const y: DeltaBinding = { key: 'y', layers: new Map([['k', f(1, 3, 3)]]) };
  const mix = combineBindings([{ binding: x, weight: 1 }, { binding: y, weight: 0 }]);
  assert.deepEqual([...mix.layers.keys()], ['q']);
  const bad: DeltaBinding = { key: 'bad', layers: new Map([['q', f(2, 4, 3)]]) };
  assert.throws(() => combineBindings([{ binding: x, weight: 1 }, { binding: bad, weight: 1 }]), /cannot combine bad into q/);
});
