import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadRuntime, type DeltaBinding, type SamplingParams, type StepEvent } from '../../src/runtime/index.ts';
import { attachTarget, loadAdapter } from '../../src/adapters/index.ts';

// With a plain session, steps in which no row carries factors run on the branch-free graph; the KV cache is
// the same either way (an empty branch adds exact zeros), so rows may cross between graphs mid-sequence.
const steps: StepEvent[] = [];
const rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1, plainSession: 'on', onStep: (e) => steps.push(e) });
const single = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1, plainSession: 'off' });
after(async () => {
  await rt.close();
  await single.close();
});
const comedy = (await loadAdapter('adapters/lora-comedy', attachTarget(rt.rewrite!, 'all-linear'))).binding;
const greedy = (maxTokens: number): SamplingParams => ({ maxTokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true });
const gen = (runtime: typeof rt, text: string, maxTokens: number, delta?: DeltaBinding) =>
  runtime.scheduler.submit({ promptIds: runtime.tokenizer.encode(text), sampling: greedy(maxTokens), ...(delta ? { delta } : {}) }).result;

test('base-only batches run on the plain graph and give the single-session tokens', async () => {
  steps.length = 0;
  const [fast, slow] = await Promise.all([gen(rt, 'ROMEO.\nBut soft,', 12), gen(single, 'ROMEO.\nBut soft,', 12)]);
  assert.deepEqual(fast.tokenIds, slow.tokenIds);
  assert.ok(steps.length > 0 && steps.every((s) => s.graph === 'plain'));
});

test('a batch with an adapter row runs on the delta graph, and returns to the plain one when it leaves', async () => {
  steps.length = 0;
  const [base, withAdapter] = await Promise.all([gen(rt, 'HAMLET.\nTo be', 24), gen(rt, 'HAMLET.\nTo be', 6, comedy)]);
  const graphs = steps.map((s) => s.graph);
  assert.ok(graphs.includes('delta'), 'the adapter row forced the delta graph');
  assert.equal(graphs.at(-1), 'plain', 'the base row finished on the plain graph');
  assert.deepEqual(base.tokenIds, (await gen(single, 'HAMLET.\nTo be', 24)).tokenIds);
  assert.deepEqual(withAdapter.tokenIds, (await gen(single, 'HAMLET.\nTo be', 6, comedy)).tokenIds);
  assert.notDeepEqual(withAdapter.tokenIds, base.tokenIds.slice(0, 6), 'the adapter changes the text');
});
