import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { loadRuntime, BRANCH_SESSION_AFTER_STEPS, type DeltaBinding, type SamplingParams, type StepEvent } from '../../src/runtime/index.ts';
import { attachTarget, loadAdapter } from '../../src/adapters/index.ts';
import { addDeltaBranches } from '../../src/runtime/graph/index.ts';
import { keepDeltaBranches } from '../../src/runtime/graph/keep-branches.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import { createSession } from '../../src/runtime/session.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';

// Once a batch's adapter layers have run BRANCH_SESSION_AFTER_STEPS steps on the full delta graph, later steps run
// on a session whose graph keeps only those layers' branches; the dropped branches added exact zeros, so the
// tokens are those of a runtime that never switches.
const steps: StepEvent[] = [];
const rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1, branchSessions: 1, onStep: (e) => steps.push(e) });
const fixed = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1, branchSessions: 0 });
after(async () => {
  await rt.close();
  await fixed.close();
});
const target = attachTarget(rt.rewrite!, 'all-linear');
const comedy = (await loadAdapter('adapters/lora-comedy', target)).binding; // c_attn of 4 blocks: 4 of 16 branches
const tragedy = (await loadAdapter('adapters/lora-tragedy', target)).binding; // all 16
const greedy = (maxTokens: number): SamplingParams => ({ maxTokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true });
const gen = (runtime: typeof rt, text: string, maxTokens: number, delta?: DeltaBinding) =>
  runtime.scheduler.submit({ promptIds: runtime.tokenizer.encode(text), sampling: greedy(maxTokens), ...(delta ? { delta } : {}) }).result;

test('keepDeltaBranches drops the other layers\' branch nodes and inputs, and refuses unknown layers', async () => {
  const rewrite = rt.rewrite!;
  const keep = new Set(comedy.layers.keys());
  const full = decodeModel(rewrite.bytes);
  const reduced = decodeModel(keepDeltaBranches(rewrite.bytes, rewrite.layers, keep));
  const branchNodes = (m: typeof full) => m.graph!.node!.filter((n) => n.name?.startsWith('/delta/')).length;
  assert.equal(rewrite.layers.length, 16);
  assert.equal(branchNodes(full), 16 * 3);
  assert.equal(branchNodes(reduced), keep.size * 3);
  assert.equal(reduced.graph!.node!.length, full.graph!.node!.length - (16 - keep.size) * 3);
  assert.deepEqual(
    reduced.graph!.input!.map((i) => i.name).filter((n) => n?.startsWith('delta.')),
    rewrite.layers.filter((l) => keep.has(l.name)).flatMap((l) => [l.aInput, l.bInput]),
  );
  // Every tensor a kept node reads is produced by a node, an initializer or a graph input.
  const known = new Set([...reduced.graph!.input!.map((i) => i.name), ...reduced.graph!.initializer!.map((t) => t.name)]);
  for (const n of reduced.graph!.node!) {
    for (const i of n.input ?? []) if (i) assert.ok(known.has(i), `${n.name} reads ${i}, which nothing produces`);
    for (const o of n.output ?? []) known.add(o);
  }
  assert.throws(() => keepDeltaBranches(rewrite.bytes, rewrite.layers, new Set(['transformer.h.9.attn.c_attn'])), /has no delta branch/);
});

test('an adapter batch moves to the reduced graph after the threshold and keeps the fixed runtime\'s tokens', async () => {
  steps.length = 0;
  const prompt = 'HAMLET.\nTo be';
  const [mine, reference] = await Promise.all([gen(rt, prompt, 24, comedy), gen(fixed, prompt, 24, comedy)]);
  assert.deepEqual(mine.tokenIds, reference.tokenIds);
  const graphs = steps.map((s) => s.graph);
  assert.deepEqual(graphs.slice(0, BRANCH_SESSION_AFTER_STEPS), Array(BRANCH_SESSION_AFTER_STEPS).fill('delta'));
  assert.equal(graphs.at(-1), 'delta-used');
  // Base-only traffic still runs on the plain graph (tiny-gpt2 keeps one: auto), a batch the reduced graph
  // does not cover (tragedy uses all 16 layers) on the full delta graph, both with the fixed runtime's tokens.
  steps.length = 0;
  const [base, wide] = await Promise.all([gen(rt, prompt, 12), gen(rt, prompt, 12, tragedy)]);
  assert.ok(steps.some((s) => s.graph === 'delta') && !steps.some((s) => s.graph === 'delta-used'));
  assert.deepEqual(base.tokenIds, (await gen(fixed, prompt, 12)).tokenIds);
  assert.deepEqual(wide.tokenIds, (await gen(fixed, prompt, 12, tragedy)).tokenIds);
  steps.length = 0;
  const alone = await gen(rt, prompt, 12);
  assert.deepEqual(alone.tokenIds, base.tokenIds);
  assert.ok(steps.every((s) => s.graph === 'plain'));
});

test('a reduced session that cannot be built is reported once and the full delta graph keeps serving', async () => {
  const info = await readModelInfo('models/tiny-gpt2');
  const rewrite = addDeltaBranches(new Uint8Array(await readFile(info.onnxPath)), 'all-linear');
  const errors: unknown[] = [];
  const engine = new Engine({
    session: await createSession(rewrite.bytes, { device: 'cpu', threads: 1 }),
    deltaLayers: rewrite.layers,
    branchSessions: { max: 1, buildAfterSteps: 1, build: async () => Promise.reject(new Error('out of memory')), onBuildError: (e) => errors.push(e) },
    shape: info,
    vocabSize: info.vocabSize,
    baseVersion: 1,
  });
  try {
    const feeds = deltaTensors(rewrite.layers, [comedy]);
    let out = await engine.forward(BatchKv.empty(info, 1), [[5, 6, 7]], feeds);
    for (let i = 0; i < 3; i++) {
      await engine.branchSessionsSettled();
      out = await engine.forward(out.kv, [[8]], feeds);
      assert.equal(out.graph, 'delta');
    }
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /out of memory/);
  } finally {
    await engine.release();
  }
});

test('prepare builds a reduced session ahead: the first step runs on it; covered sets, the bound and unknown layers', async () => {
  const info = await readModelInfo('models/tiny-gpt2');
  const rewrite = addDeltaBranches(new Uint8Array(await readFile(info.onnxPath)), 'all-linear');
  const built: number[] = [];
  const engine = new Engine({
    session: await createSession(rewrite.bytes, { device: 'cpu', threads: 1 }),
    deltaLayers: rewrite.layers,
    branchSessions: {
      max: 1,
      buildAfterSteps: BRANCH_SESSION_AFTER_STEPS,
      build: (keep) => (built.push(keep.size), createSession(keepDeltaBranches(rewrite.bytes, rewrite.layers, keep), { device: 'cpu', threads: 1 })),
    },
    shape: info,
    vocabSize: info.vocabSize,
    baseVersion: 1,
  });
  try {
    const layers = new Set(comedy.layers.keys());
    assert.equal(await engine.prepareBranches(layers), true);
    assert.equal(await engine.prepareBranches(new Set([...layers].slice(0, 2))), true, 'a subset is covered');
    assert.deepEqual(built, [4], 'one build, for the 4 layers');
    assert.equal(await engine.prepareBranches(new Set(tragedy.layers.keys())), false, 'bound reached');
    await assert.rejects(engine.prepareBranches(new Set(['transformer.h.9.attn.c_attn'])), /not a delta layer/);
    const out = await engine.forward(BatchKv.empty(info, 1), [[5, 6, 7]], deltaTensors(rewrite.layers, [comedy]));
    assert.equal(out.graph, 'delta-used');
  } finally {
    await engine.release();
  }
});
