import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopStrings } from '../../src/runtime/stop-strings.ts';

test('finds the earliest stop string', () => {
  const s = new StopStrings(['\n\n', 'END']);
  assert.equal(s.firstMatch('abc END x\n\n'), 4);
  assert.equal(s.firstMatch('nothing here'), -1);
});

test('holds back a suffix that may start a stop string', () => {
  const s = new StopStrings(['END']);
  assert.equal(s.safeLength('hello EN'), 6);
  assert.equal(s.safeLength('hello E'), 6);
  assert.equal(s.safeLength('hello'), 5);
  assert.equal(new StopStrings([]).safeLength('abc'), 3);
});

test('search from an offset still finds a stop string straddling it', () => {
  const s = new StopStrings(['STOP']);
  assert.equal(s.firstMatch('abcST' + 'OP', 5), 3);
});
