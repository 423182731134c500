import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EditError } from '../../src/edits/errors.ts';
import { openSmall, smallEdit } from './small-store.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'edit-store-'));

test('restart replays the log to bit-identical W and C, with and without snapshots', async () => {
  const dir = tmp();
  const store = await openSmall(dir);
  const hashes = new Map<number, string>([[0, store.current.hash()]]);
  for (let i = 1; i <= 20; i++) {
    const seq = store.commit(smallEdit(i), { source: 'raw' });
    assert.equal(seq, i);
    hashes.set(seq, store.current.hash());
  }
  store.close();
  const reopened = await openSmall(dir);
  assert.equal(reopened.seq, 20);
  assert.equal(reopened.current.hash(), hashes.get(20));
  assert.ok(reopened.replayed.fromSnapshot > 0, 'a snapshot shortened the replay');
  reopened.close();
  // Only snapshot 0 left: the full replay gives the same bits.
  for (const f of readdirSync(join(dir, 'snapshots'))) if (f !== 'snap-0.bin') rmSync(join(dir, 'snapshots', f));
  const full = await openSmall(dir);
  assert.equal(full.replayed.fromSnapshot, 0);
  assert.equal(full.current.hash(), hashes.get(20));

  // Rollback restores the exact state at that seq, durably; new edits continue the seq numbering.
  full.rollback(9);
  assert.equal(full.seq, 9);
  assert.equal(full.current.hash(), hashes.get(9));
  const next = full.commit(smallEdit(21), { source: 'raw' });
  assert.equal(next, 21);
  const after = full.current.hash();
  full.close();
  const again = await openSmall(dir);
  assert.equal(again.seq, 21);
  assert.deepEqual(again.current.history, [1, 2, 3, 4, 5, 6, 7, 8, 9, 21]);
  assert.equal(again.current.hash(), after);
  assert.throws(() => again.rollback(15), (e: unknown) => e instanceof EditError && e.code === 'unknown_seq');
  again.rollback(0);
  assert.equal(again.current.hash(), hashes.get(0));
  again.close();
  const zero = await openSmall(dir);
  assert.equal(zero.seq, 0);
  assert.equal(zero.current.hash(), hashes.get(0));
  zero.close();
});

test('a torn record at the tail is cut off; acknowledged records stay', async () => {
  const dir = tmp();
  const store = await openSmall(dir);
  for (let i = 1; i <= 3; i++) store.commit(smallEdit(i), { source: 'raw' });
  const hash = store.current.hash();
  store.close();
  const log = join(dir, 'edits.log');
  const size = statSync(log).size;
  appendFileSync(log, Buffer.from([0x50, 0x42, 0x45, 0x31, 0xff, 0x00, 0x00, 0x00, 1, 2, 3]));
  const reopened = await openSmall(dir);
  assert.equal(reopened.replayed.truncatedBytes, 11);
  assert.equal(statSync(log).size, size);
  assert.equal(reopened.current.hash(), hash);
  assert.equal(reopened.commit(smallEdit(4), { source: 'raw' }), 4);
  reopened.close();
});

test('a rejected edit changes nothing: not the state, not the log', async () => {
  const dir = tmp();
  const store = await openSmall(dir);
  store.commit(smallEdit(1), { source: 'raw' });
  const hash = store.current.hash();
  const bytes = store.stats().logBytes;
  const good = smallEdit(2);
  const nan = good.map((p) => ({ ...p, values: Float64Array.from(p.values, (v, i) => (i === 2 ? NaN : v)) }));
  const cases: [string, Parameters<typeof store.commit>[0], EditError['code']][] = [
    ['NaN in values', nan, 'non_finite'],
    ['unknown layer', [{ ...good[0]!, layer: 'nope' }], 'unknown_layer'],
    ['wrong key length', [{ ...good[0]!, keys: good[0]!.keys.subarray(1) }], 'shape_mismatch'],
    ['no keys', [{ ...good[0]!, u: 0, keys: new Float64Array(0), values: new Float64Array(0) }], 'invalid_edit'],
    ['no parts', [], 'invalid_edit'],
  ];
  for (const [what, parts, code] of cases) {
    assert.throws(() => store.commit(parts, { source: 'raw' }), (e: unknown) => e instanceof EditError && e.code === code, what);
    assert.equal(store.current.hash(), hash, what);
    assert.equal(store.stats().logBytes, bytes, what);
    assert.equal(store.seq, 1, what);
  }
  store.close();
});

test('a log written under other settings is refused at open', async () => {
  const dir = tmp();
  (await openSmall(dir)).close();
  await assert.rejects(openSmall(dir, { fingerprint: 'other' }), (e: unknown) => e instanceof EditError && e.code === 'log_mismatch');
});

test('restart and rollback read back only the edit records after the snapshot they start from', async () => {
  // What keeps memory flat over a long stream: the store holds an index of the log, not the edits' keys and
  // values, and a replay reads back just the records it applies (snapshotEvery = 7 here).
  const dir = tmp();
  const store = await openSmall(dir);
  const hashes = new Map<number, string>();
  for (let i = 1; i <= 20; i++) {
    store.commit(smallEdit(i), { source: 'raw' });
    hashes.set(i, store.current.hash());
  }
  store.close();
  const reopened = await openSmall(dir);
  assert.deepEqual([reopened.replayed.fromSnapshot, reopened.replayed.replayedEdits], [14, 6]);
  assert.equal(reopened.replayed.records, 21, 'every record was checked (init + 20 edits)');
  reopened.rollback(9);
  assert.deepEqual(reopened.lastRollback, { fromSnapshot: 7, replayedEdits: 2 });
  assert.equal(reopened.current.hash(), hashes.get(9));
  reopened.rollback(3);
  assert.deepEqual(reopened.lastRollback, { fromSnapshot: 0, replayedEdits: 3 });
  assert.equal(reopened.current.hash(), hashes.get(3));
  assert.throws(() => reopened.rollback(9), (e: unknown) => e instanceof EditError && e.code === 'unknown_seq');
  assert.equal(reopened.commit(smallEdit(21), { source: 'raw' }), 21);
  const after = reopened.current.hash();
  reopened.close();
  const again = await openSmall(dir);
  assert.deepEqual(again.current.history, [1, 2, 3, 21]);
  assert.equal(again.current.hash(), after);
  again.close();
});
