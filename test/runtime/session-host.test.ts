/**
 * Sessions hosted in a worker thread (session-host.ts) against the same graph on this thread: identical
 * logits bit for bit (prefill, then decode steps fed the worker's own KV outputs), feeds left usable, a
 * version's weights composed there bit-identical to here, and errors that come back typed.
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
import { InitializerTable, sharedCopy } from '../../src/runtime/versions/initializer-table.ts';
import { BaseVersionError } from '../../src/runtime/versions/base-versions-error.ts';
import { composeWeights, type ComposePart } from '../../src/runtime/versions/compose.ts';

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
        const fed = (b.kv as BatchKv).tensors.map((t) => (t.data as Float32Array).slice());
        a = await local.forward(a.kv, next);
        const kvBefore = b.kv as BatchKv; // the embedded models use the Concat cache
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

test('a version composed in the worker is bit-identical to one composed here; a non-finite value is a typed error', async () => {
  const info = await readModelInfo('models/tiny-gpt2');
  const pristine = sharedCopy(new Uint8Array(await readFile(info.onnxPath)));
  const table = InitializerTable.of(pristine);
  const [a, b] = table.names().filter((n) => table.get(n)!.consumers === 1 && table.get(n)!.length > 1000);
  const noise = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => 1e-3 * Math.sin(seed * 7.1 + i * 0.37));
  const len = (n: string) => table.get(n)!.length;
  const parts: ComposePart[] = [
    { source: 'edits', replace: [[a!, noise(len(a!), 1)]], check: false },
    { source: 'patches', add: [[a!, noise(len(a!), 2)], [b!, noise(len(b!), 3)]], check: true },
  ];
  const slots = new Map([a!, b!].map((n) => [n, { offset: table.get(n)!.offset, length: len(n) }]));
  const host = new SessionHost();
  try {
    const there = await host.compose(pristine, slots, parts);
    const here = composeWeights(pristine, slots, parts);
    assert.deepEqual([...there.keys()].sort(), [a!, b!].sort());
    for (const [name, w] of here) assert.deepEqual(there.get(name), w, name);
    // W = replacement + delta for a; pristine + delta for b (float32 arithmetic, in part order).
    const w0b = table.read(b!);
    assert.equal(there.get(b!)![5], Math.fround(w0b[5]! + parts[1]!.add![1]![1][5]!));
    const bad = noise(len(b!), 4);
    bad[9] = Number.POSITIVE_INFINITY;
    await assert.rejects(
      host.compose(pristine, slots, [{ source: 'patches', add: [[b!, bad]], check: true }]),
      (e: unknown) => e instanceof BaseVersionError && e.code === 'non_finite' && /patches: add tensor for .* non-finite value at 9/.test(e.message),
    );
  } finally {
    await host.close();
  }
});
