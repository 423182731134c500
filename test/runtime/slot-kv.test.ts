/** SlotKv (runtime/slot-kv.ts): appends after each row's cached positions, grows by blocks, packs in place. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from 'onnxruntime-node';
import { SlotKv, SlotPolicy } from '../../src/runtime/slot-kv.ts';

const shape = { numLayers: 1, numKvHeads: 2, headDim: 3 };
const policy = new SlotPolicy(4, 10); // steps of 4 (the block caps the 16-position minimum)

/** New keys/values for a left-padded step: value = 1000·row + 100·head + 10·column + d (+0.5 for values). */
function step(rows: number, width: number): Tensor[] {
  const make = (v: number) => {
    const data = new Float32Array(rows * 2 * width * 3);
    for (let b = 0; b < rows; b++) for (let h = 0; h < 2; h++) for (let s = 0; s < width; s++) for (let d = 0; d < 3; d++) data[((b * 2 + h) * width + s) * 3 + d] = 1000 * b + 100 * h + 10 * s + d + v;
    return new Tensor('float32', data, [rows, 2, width, 3]);
  };
  return [make(0), make(0.5)];
}

/** Row b, head h, positions [0, lens[b]) of the key buffer as fed to the graph. */
function keys(kv: SlotKv, b: number, h: number): number[] {
  const t = kv.tensors()[0]!;
  const data = t.data as Float32Array;
  const c = kv.capacity;
  return Array.from(data.subarray(((b * 2 + h) * c) * 3, ((b * 2 + h) * c + kv.lens[b]!) * 3));
}

test('append writes each row\'s real (right-most) columns after its cached ones; capacity grows by blocks, at most the context', () => {
  const kv = new SlotKv(shape, policy, 2);
  kv.append(step(2, 3), 3, [3, 1]); // row 1 is left-padded: only its last column is real
  assert.equal(kv.capacity, 4);
  assert.deepEqual(kv.lens, [3, 1]);
  assert.deepEqual(keys(kv, 1, 1), [1120, 1121, 1122]);
  kv.append(step(2, 1), 1, [1, 1]);
  kv.append(step(2, 1), 1, [1, 1]); // row 0 needs 5 positions: one block more
  assert.equal(kv.capacity, 8);
  assert.deepEqual(keys(kv, 0, 0).filter((_, i) => i % 3 === 0), [0, 10, 20, 0, 0]);
  assert.deepEqual(keys(kv, 1, 0).filter((_, i) => i % 3 === 0), [1020, 1000, 1000]);
  kv.append(step(2, 5), 5, [5, 0]); // 10 positions: the context, not 12
  assert.equal(kv.capacity, 10);
  assert.deepEqual(kv.tensors()[0]!.dims, [2, 2, 10, 3]);
  const mask = kv.mask(1, [1, 1]).data as BigInt64Array;
  assert.deepEqual(Array.from(mask.subarray(0, 11), Number), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(Array.from(mask.subarray(11, 22), Number), [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
});

test('pack in place: rows that stay keep order, leavers are dropped, newcomers copied in; otherwise a fresh cache', () => {
  const batch = new SlotKv(shape, policy, 3);
  batch.append(step(3, 2), 2, [2, 2, 1]);
  const newcomer = new SlotKv(shape, policy, 1);
  newcomer.append(step(1, 1), 1, [1]);
  const row2 = keys(batch, 2, 1);
  // Row 1 leaves, a newcomer joins: same object, row 2 moved to slot 1.
  const packed = SlotKv.pack(shape, policy, [{ from: batch, row: 0 }, { from: batch, row: 2 }, { from: newcomer, row: 0 }], true);
  assert.equal(packed, batch);
  assert.deepEqual(packed.lens, [2, 1, 1]);
  assert.deepEqual(keys(packed, 1, 1), row2);
  assert.deepEqual(keys(packed, 2, 0), [0, 1, 2]);
  // Reordered rows (or not in place): a fresh cache, the sources untouched.
  const before = keys(batch, 0, 0);
  const fresh = SlotKv.pack(shape, policy, [{ from: batch, row: 1 }, { from: batch, row: 0 }], true);
  assert.notEqual(fresh, batch);
  assert.deepEqual(keys(fresh, 1, 0), before);
  assert.deepEqual(keys(batch, 0, 0), before);
  // One prefilled row copied to n members (an n > 1 request): a fresh cache.
  const group = SlotKv.pack(shape, policy, [{ from: newcomer, row: 0 }, { from: newcomer, row: 0 }], true);
  assert.notEqual(group, newcomer);
  assert.deepEqual(keys(group, 1, 0), keys(newcomer, 0, 0));
});

test('SlotPolicy refuses a block that is not a positive integer', () => {
  assert.throws(() => new SlotPolicy(0, 10), /positive integer/);
  const p = new SlotPolicy(256, 8192);
  assert.equal(p.capacityFor(0), 0);
  assert.equal(p.capacityFor(5), 16, 'at least 16');
  assert.equal(p.capacityFor(50), 64, 'steps of need/8 as a power of two: 4 → 16');
  assert.equal(p.capacityFor(1000), 1024, 'step 64');
  assert.equal(p.capacityFor(4097), 4352, 'step capped at the block');
  assert.equal(new SlotPolicy(256, 4100).capacityFor(4097), 4100, 'never beyond the context');
});
