import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, argmax, seededRandom } from '../../src/runtime/sampler.ts';

const params = (over: Partial<ConstructorParameters<typeof Sampler>[0]> = {}) => ({
  maxTokens: 1, temperature: 1, topP: 1, topK: 0, stop: [], seed: 7, ...over,
});

test('greedy picks the argmax', () => {
  const logits = new Float32Array([0.1, 3, -2, 2.9]);
  assert.equal(new Sampler(params({ temperature: 0 })).next(logits), 1);
  assert.equal(argmax(logits), 1);
});

test('same seed gives the same draws; a different seed differs', () => {
  const logits = new Float32Array(50).map((_, i) => Math.sin(i));
  const draw = (seed: number) => {
    const s = new Sampler(params({ seed }));
    return Array.from({ length: 40 }, () => s.next(logits));
  };
  assert.deepEqual(draw(1), draw(1));
  assert.notDeepEqual(draw(1), draw(2));
});

test('top_k = 1 is greedy, and top_k restricts the support', () => {
  const logits = new Float32Array([1, 5, 4, 3, 0]);
  const s = new Sampler(params({ topK: 1 }));
  for (let i = 0; i < 20; i++) assert.equal(s.next(logits), 1);
  const s2 = new Sampler(params({ topK: 2, temperature: 5 }));
  for (let i = 0; i < 200; i++) assert.ok([1, 2].includes(s2.next(logits)));
});

test('top_p keeps the smallest prefix reaching the mass', () => {
  // probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps the first two tokens only
  const logits = new Float32Array([Math.log(0.64), Math.log(0.24), Math.log(0.09), Math.log(0.03)]);
  const s = new Sampler(params({ topP: 0.7 }));
  const seen = new Set(Array.from({ length: 500 }, () => s.next(logits)));
  assert.deepEqual([...seen].sort(), [0, 1]);
});

test('sampling frequencies follow softmax(logits / T)', () => {
  const logits = new Float32Array([0, Math.log(3)]); // p = [0.25, 0.75] at T = 1
  const s = new Sampler(params({ seed: 123 }));
  let ones = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) ones += s.next(logits);
  assert.ok(Math.abs(ones / n - 0.75) < 0.02, `got ${ones / n}`);
});

test('seededRandom is uniform on [0, 1)', () => {
  const r = seededRandom(42);
  let sum = 0;
  for (let i = 0; i < 10000; i++) {
    const v = r();
    assert.ok(v >= 0 && v < 1);
    sum += v;
  }
  assert.ok(Math.abs(sum / 10000 - 0.5) < 0.02);
});
