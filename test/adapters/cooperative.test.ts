import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Slicer } from '../../src/adapters/cooperative.ts';

test('Slicer: inside its slice pause() returns without letting the loop run; past it, queued callbacks run first', async () => {
  const long = new Slicer(60_000);
  let ran = false;
  setImmediate(() => (ran = true));
  await long.pause();
  assert.equal(ran, false, 'within the slice nothing else ran');
  assert.equal(long.yields, 0);

  const short = new Slicer(0);
  let other = false;
  setImmediate(() => (other = true));
  await short.pause();
  assert.equal(other, true, 'a callback queued before the pause ran during it');
  assert.equal(short.yields, 1);
});
