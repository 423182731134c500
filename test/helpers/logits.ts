import assert from 'node:assert/strict';

/** Largest |actual − expected| over a logit vector; lengths must agree. */
export function maxAbsDiff(actual: Float32Array, expected: readonly number[]): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  return worst;
}
