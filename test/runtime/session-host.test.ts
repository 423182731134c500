/**
 * Sessions hosted in a worker thread (session-host.ts) against the same graph on this thread: identical
 * logits bit for bit (prefill, then decode steps fed the worker's own KV outputs), feeds left usable, and
 * errors that come back typed.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { PatchbayError } from '../../src/errors.ts';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { SessionHost } from '../../src/runtime/session-host.ts';
import { sharedCopy } from '../../src/runtime/versions/initializer-table.ts';

for (const name of ['tiny-gpt2', 'tiny-llama']) {
  test(`${name}: a hosted session gives exactly the in-thread logits, step after step`, async () => {
    const info = await readModelInfo(`models/${name}`);
    const bytes = new Uint8Array(await readFile(info.onnxPath));
    const local = new Engine({ session: await createSession(bytes, { device: 'cpu', threads: 1 }), shape: info, vocabSize: info.vocabSize, baseVersion: 0 });
    const host = new SessionHost();
    // From shared memory, as base versions are built.
    const hostedSession = await host.create({ shared: sharedCopy(bytes), patches: [] }, { device: 'cpu', threads: 1 });
    assert.deepEqual(hostedSession.inputNames, local.session.inputNames);
    assert.deepEqual(hostedSession.outputNames, local.session.outputNames);
    const hosted = new Engine({ session: hostedSession, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    try {
      const prompts = [[5, 9, 14, 3], [7, 2]];
      let a = await local.forward(BatchKv.empty(info, 2), prompts);
      let b = await hosted.forward(BatchKv.empty(info, 2), prompts);
      assert.deepEqual(b.allLogits, a.allLogits);
      for (let step = 0; step < 4; step++) {
        const next = [[11 + step], [20 + step]];
        const fed = b.kv.tensors.map((t) => (t.data as Float32Array).slice());
        a = await local.forward(a.kv, next);
        const kvBefore = b.kv;
        b = await hosted.forward(b.kv, next);
        assert.deepEqual(b.logits, a.logits, `step ${step}`);
        // The caller's feeds crossed as copies: still intact after the run.
        kvBefore.tensors.forEach((t, i) => assert.deepEqual(t.data, fed[i]));
      }
    } finally {
      await local.release();
      await hosted.release();
    }
    await assert.rejects(hostedSession.run({}, ['logits']), /closed|exited/);
  });
}

test('a model ORT cannot load is a typed error from the worker, and the host can be closed', async () => {
  const host = new SessionHost();
  await assert.rejects(
    host.create({ bytes: new Uint8Array([1, 2, 3, 4]) }, { device: 'cpu', threads: 1 }),
    (e: unknown) => e instanceof PatchbayError && e.status === 400 && e.code === 'invalid_model',
  );
  await host.close();
});

test('a failed run is an error of that run; the session keeps serving', async () => {
  const info = await readModelInfo('models/tiny-gpt2');
  const host = new SessionHost();
  const session = await host.create({ bytes: new Uint8Array(await readFile(info.onnxPath)) }, { device: 'cpu', threads: 1 });
  const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
  await assert.rejects(session.run({}, ['logits']), /input/i);
  const out = await engine.forward(BatchKv.empty(info, 1), [[1, 2, 3]]);
  assert.equal(out.logits[0]!.length, info.vocabSize);
  await session.release();
});
