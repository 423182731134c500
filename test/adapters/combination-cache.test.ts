import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CombinationCache } from '../../src/adapters/combination-cache.ts';
import { combineBindings } from '../../src/adapters/combine.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';

const binding = (key: string, rank: number, seed: number): DeltaBinding => ({
  key,
  layers: new Map([['l', { rank, a: Float32Array.from({ length: 3 * rank }, (_, i) => Math.sin(seed + i)), b: Float32Array.from({ length: rank * 2 }, (_, i) => Math.cos(seed * i)) }]]),
});

test('a cached adapter ⊕ patch binding is the exact combination, reused only for the very same inputs', () => {
  const cache = new CombinationCache();
  const lora = binding('lora', 2, 1);
  const patch = binding('patches(p*1)', 3, 2);
  const first = cache.combine(lora, patch);
  assert.deepEqual(first, combineBindings([{ binding: lora, weight: 1 }, { binding: patch, weight: 1 }], 'lora+patches(p*1)'));
  assert.equal(cache.combine(lora, patch), first, 'the same inputs: the cached object');
  assert.deepEqual([cache.hits, cache.misses], [1, 1]);
  // A reloaded adapter with the same key but other factors is a new object: rebuilt, never stale.
  const reloaded = binding('lora', 2, 7);
  const second = cache.combine(reloaded, patch);
  assert.notEqual(second, first);
  assert.deepEqual(second, combineBindings([{ binding: reloaded, weight: 1 }, { binding: patch, weight: 1 }], 'lora+patches(p*1)'));
  assert.deepEqual([cache.hits, cache.misses], [1, 2]);
});

test('a combination larger than the byte budget is built every time, not kept', () => {
  const cache = new CombinationCache({ maxBytes: 16 });
  const lora = binding('lora', 2, 1);
  const patch = binding('p', 3, 2);
  const a = cache.combine(lora, patch);
  const b = cache.combine(lora, patch);
  assert.notEqual(a, b);
  assert.deepEqual(a, b);
  assert.equal(cache.hits, 0);
});
