import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tensor } from 'onnxruntime-node';
import { BatchKv, pack } from '../../src/runtime/batch-kv.ts';

const shape = { numLayers: 1, numKvHeads: 2, headDim: 3 };

/** A batch cache whose value at [b, h, k, d] encodes its coordinates, so copies can be checked exactly. */
function filled(width: number, lens: number[]): BatchKv {
  const tensors = [0, 1].map((t) => {
    const data = new Float32Array(lens.length * 2 * width * 3);
    for (let b = 0; b < lens.length; b++)
      for (let h = 0; h < 2; h++)
        for (let k = 0; k < width; k++)
          for (let d = 0; d < 3; d++) data[((b * 2 + h) * width + k) * 3 + d] = t * 10000 + b * 1000 + h * 100 + k * 10 + d;
    return new Tensor('float32', data, [lens.length, 2, width, 3]);
  });
  return new BatchKv(shape, tensors, width, lens);
}

test('mask marks each row suffix and the new real columns', () => {
  const kv = filled(4, [4, 2]);
  const mask = Array.from(kv.mask(3, [3, 1]).data as BigInt64Array, Number);
  assert.deepEqual(mask, [1, 1, 1, 1, 1, 1, 1, /* row 1 */ 0, 0, 1, 1, 0, 0, 1]);
});

test('pack right-aligns each row suffix into the narrowest width', () => {
  const a = filled(5, [5, 2]);
  const b = filled(3, [3]);
  const packed = pack(shape, [{ from: a, row: 1 }, { from: b, row: 0 }]);
  assert.equal(packed.width, 3);
  assert.deepEqual(packed.lens, [2, 3]);
  const data = packed.tensors[1]!.data as Float32Array;
  const at = (row: number, h: number, k: number, d: number) => data[((row * 2 + h) * 3 + k) * 3 + d];
  // row 0 came from a's row 1, real positions 3..4 → packed positions 1..2
  assert.equal(at(0, 1, 1, 2), 10000 + 1000 + 100 + 30 + 2);
  assert.equal(at(0, 1, 2, 0), 10000 + 1000 + 100 + 40);
  assert.equal(at(0, 0, 0, 0), 0, 'the padding column is zero');
  assert.equal(at(1, 0, 0, 1), 10000 + 1);
});

test('advance extends the width and the row lengths', () => {
  const kv = BatchKv.empty(shape, 2).advance(filled(4, [4, 4]).tensors, 4, [4, 2]);
  assert.equal(kv.width, 4);
  assert.deepEqual(kv.lens, [4, 2]);
});
