import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { BaseVersionError, loadRuntime, type Runtime, type SamplingParams } from '../../src/runtime/index.ts';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import type { Engine } from '../../src/runtime/engine.ts';

let rt: Runtime;
before(async () => {
  rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1 });
});
after(() => rt.close());

const greedy = (maxTokens: number): SamplingParams => ({ maxTokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true });
const LAYER = 'transformer.h.0.mlp.c_fc';

/** A large, deterministic change to one layer: enough to change greedy text. */
function bump(scale: number): Map<string, Float32Array> {
  const { initializer } = rt.versions.linearWeight(LAYER)!;
  const w = rt.versions.pristine(initializer);
  const delta = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) delta[i] = scale * Math.sin(i * 0.37);
  return new Map([[initializer, delta]]);
}

/** SHA-256 over every float initializer the served version holds (pristine bytes except `tensors`). */
function servedWeightsHash(): string {
  const v = rt.versions.current();
  const h = createHash('sha256');
  for (const name of [...rt.versions.initializerNames()].sort()) {
    const t = v.tensors.get(name) ?? rt.versions.pristine(name);
    h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  return h.digest('hex');
}

async function lastLogits(): Promise<Float32Array> {
  const { engine } = rt.versions.current();
  const ids = rt.tokenizer.encode('ROMEO.\nBut soft, what light');
  const out = await engine.forward(BatchKv.empty(engine.shape, 1), [ids]);
  return out.logits[0]!;
}

/**
 * Paces version `engine`'s steps (25 ms each) until the returned function is called: the build no longer
 * stalls running sequences, so without pacing a short generation may finish before the build does.
 */
function pace(engine: Engine): () => void {
  const forward = engine.forward;
  engine.forward = async (...args) => {
    await new Promise((r) => setTimeout(r, 25));
    return forward.apply(engine, args);
  };
  return () => void (engine.forward = forward);
}

test('a generation that straddles a switch finishes on its version, exactly, and keeps stepping during the build', async () => {
  const prompt = rt.tokenizer.encode('HAMLET.\nTo be, or not');
  const v0 = rt.versions.current().id;
  const before = await rt.scheduler.submit({ promptIds: prompt, sampling: greedy(120) }).result;
  assert.equal(before.baseVersion, v0);

  const unpace = pace(rt.versions.current().engine);
  const long = rt.scheduler.submit({ promptIds: prompt, sampling: greedy(120) });
  const tokens: number[] = [];
  const consumed = (async () => {
    for await (const e of long) if (e.tokenId >= 0) tokens.push(e.tokenId);
  })();
  while (tokens.length < 5) await new Promise((r) => setTimeout(r, 5));
  const atPublish = tokens.length;
  const swap = await rt.versions.publish('test', { add: bump(0.05) }, { why: 'straddle' });
  const atSwitch = tokens.length;
  unpace();
  assert.ok(atSwitch < 120, 'the generation was still running at the switch');
  // The version built on a worker thread (session-host.ts): the running sequence kept producing tokens.
  assert.ok(atSwitch - atPublish >= 3, `the running sequence stepped while the version built (${atSwitch - atPublish} tokens)`);
  assert.equal(swap.from, v0);
  assert.equal(rt.versions.current().id, swap.to);
  assert.equal(rt.versions.resident, 2, 'the old version stays resident while its sequence runs');
  const fresh = rt.scheduler.submit({ promptIds: prompt, sampling: greedy(120) }).result;
  const [old, next] = await Promise.all([long.result, fresh]);
  await consumed;
  assert.deepEqual(old.tokenIds, before.tokenIds, 'the straddling generation gives exactly its old output');
  assert.equal(old.baseVersion, v0);
  assert.equal(next.baseVersion, swap.to);
  assert.notDeepEqual(next.tokenIds, before.tokenIds, 'the new version really has other weights');
  assert.equal(rt.versions.resident, 1, 'the old version is released once its last sequence ended');
  assert.deepEqual(rt.versions.current().labels, { test: { why: 'straddle' } });
  await rt.versions.publish('test', undefined);
});

test('withdrawing every change restores the pristine weights bit-exactly (hash) and the same logits', async () => {
  const pristineHash = servedWeightsHash();
  const pristineLogits = await lastLogits();
  await rt.versions.publish('a', { add: bump(0.01) });
  await rt.versions.publish('b', { add: bump(-0.003) });
  assert.notEqual(servedWeightsHash(), pristineHash);
  await rt.versions.publish('a', undefined);
  await rt.versions.publish('b', undefined);
  assert.deepEqual(rt.versions.current().changed, []);
  assert.equal(servedWeightsHash(), pristineHash);
  assert.deepEqual(await lastLogits(), pristineLogits);
});

test('contributions compose: W = W0 + Σ adds, recomputed from the pristine weights', async () => {
  const a = bump(0.01);
  const b = bump(0.02);
  await rt.versions.publish('a', { add: a });
  await rt.versions.publish('b', { add: b });
  const [name] = [...a.keys()];
  const w0 = rt.versions.pristine(name!);
  const served = rt.versions.current().tensors.get(name!)!;
  for (let i = 0; i < w0.length; i += 997) assert.equal(served[i], Math.fround(Math.fround(w0[i]! + a.get(name!)![i]!) + b.get(name!)![i]!));
  await rt.versions.publish('a', undefined);
  await rt.versions.publish('b', undefined);
});

test('a rejected publish changes nothing', async () => {
  const before = rt.versions.current();
  const { initializer } = rt.versions.linearWeight(LAYER)!;
  const bad = new Float32Array(rt.versions.pristine(initializer).length);
  bad[17] = Number.NaN;
  await assert.rejects(rt.versions.publish('x', { add: new Map([[initializer, bad]]) }), (e: unknown) => e instanceof BaseVersionError && e.code === 'non_finite');
  await assert.rejects(rt.versions.publish('x', { add: new Map([[initializer, new Float32Array(3)]]) }), (e: unknown) => e instanceof BaseVersionError && e.code === 'shape_mismatch');
  await assert.rejects(rt.versions.publish('x', { add: new Map([['nope', new Float32Array(3)]]) }), (e: unknown) => e instanceof BaseVersionError && e.code === 'unknown_initializer');
  await rt.versions.publish('r1', { replace: bump(0) });
  const mid = rt.versions.current();
  await assert.rejects(rt.versions.publish('r2', { replace: bump(0) }), (e: unknown) => e instanceof BaseVersionError && e.code === 'conflict');
  assert.equal(rt.versions.current(), mid);
  await rt.versions.publish('r1', undefined);
  assert.notEqual(rt.versions.current(), before);
  assert.deepEqual(rt.versions.current().changed, []);
});

test('publishes are serialized in call order', async () => {
  const start = rt.versions.current().id;
  const swaps = await Promise.all([rt.versions.publish('s', { add: bump(0.01) }), rt.versions.publish('s', { add: bump(0.02) }), rt.versions.publish('s', undefined)]);
  assert.deepEqual(swaps.map((s) => [s.from, s.to]), [[start, start + 1], [start + 1, start + 2], [start + 2, start + 3]]);
  assert.deepEqual(rt.versions.current().changed, []);
});

test('with PATCHBAY_SESSION_WORKERS=off versions build on this thread: same weights, same refusals', async () => {
  const off = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 2, maxQueue: 2, threads: 1, sessionWorkers: 'off' });
  try {
    const changes = { add: bump(0.02) };
    await rt.versions.publish('same', changes);
    await off.versions.publish('same', changes);
    const [name] = [...changes.add.keys()];
    assert.deepEqual(off.versions.current().tensors.get(name!), rt.versions.current().tensors.get(name!));
    const prompt = rt.tokenizer.encode('ROMEO.\nBut soft');
    const [a, b] = await Promise.all([rt, off].map((r) => r.scheduler.submit({ promptIds: prompt, sampling: greedy(12) }).result));
    assert.deepEqual(b!.tokenIds, a!.tokenIds);
    const bad = new Float32Array(changes.add.get(name!)!.length);
    bad[3] = Number.NaN;
    const before = off.versions.current();
    await assert.rejects(off.versions.publish('x', { add: new Map([[name!, bad]]) }), (e: unknown) => e instanceof BaseVersionError && e.code === 'non_finite');
    assert.equal(off.versions.current(), before);
  } finally {
    await rt.versions.publish('same', undefined);
    await off.close();
  }
});
