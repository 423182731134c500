/**
 * ORT session options (src/runtime/session.ts): PATCHBAY_ORT_SPINNING=off reaches ORT as the session config
 * entries that stop pool threads from busy-waiting, and a session built with it computes the same logits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Tensor } from 'onnxruntime-node';
import { createSession, ortSessionOptions } from '../../src/runtime/session.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { pastNames } from '../../src/runtime/batch-kv.ts';

test('spinning: off sets intra/inter-op allow_spinning = "0"; default and on leave ORT its own default', () => {
  assert.deepEqual(ortSessionOptions({ device: 'cpu', threads: 2, spinning: false }).extra, {
    session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } },
  });
  assert.equal(ortSessionOptions({ device: 'cpu', threads: 2 }).extra, undefined);
  assert.equal(ortSessionOptions({ device: 'cpu', threads: 2, spinning: true }).extra, undefined);
});

test('a session without spinning loads and gives the same logits as the default one', async () => {
  const info = await readModelInfo('models/tiny-llama');
  const bytes = new Uint8Array(await readFile(info.onnxPath));
  const feeds: Record<string, Tensor> = {
    input_ids: new Tensor('int64', BigInt64Array.of(5n, 17n, 3n), [1, 3]),
    attention_mask: new Tensor('int64', BigInt64Array.of(1n, 1n, 1n), [1, 3]),
    position_ids: new Tensor('int64', BigInt64Array.of(0n, 1n, 2n), [1, 3]),
  };
  for (const name of pastNames(info.numLayers)) feeds[name] = new Tensor('float32', new Float32Array(0), [1, info.numKvHeads, 0, info.headDim]);
  const logits: Float32Array[] = [];
  for (const spinning of [true, false]) {
    const session = await createSession(bytes, { device: 'cpu', threads: 2, spinning });
    try {
      logits.push((await session.run(feeds))['logits']!.data as Float32Array);
    } finally {
      await session.release();
    }
  }
  assert.equal(logits[0]!.length, 3 * info.vocabSize);
  assert.deepEqual(logits[1], logits[0]);
});
