import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadRuntime, type GenerationHandle, type Runtime, type SamplingParams, type StepEvent } from '../../src/runtime/index.ts';
import { PatchbayError } from '../../src/errors.ts';

// The Llama model is random-weight and ~1 MB: fast enough to make scheduling tests cheap. Its greedy
// output never hits EOS early (checked in reference-logits.test.ts), so token counts are predictable.
const steps: StepEvent[] = [];
let rt: Runtime;
before(async () => {
  rt = await loadRuntime({ modelDir: 'models/tiny-llama', device: 'cpu', maxBatch: 4, maxQueue: 3, threads: 1, onStep: (e) => steps.push(e) });
});
after(() => rt.close());

const greedy = (maxTokens: number, over: Partial<SamplingParams> = {}): SamplingParams => ({
  maxTokens, temperature: 0, topP: 1, topK: 0, stop: [], ...over,
});
const prompt = (text: string) => rt.tokenizer.encode(text);

test('a request that joins mid-flight gets the same tokens as when run alone', async () => {
  const alone = await rt.scheduler.submit({ promptIds: prompt('Good morrow'), sampling: greedy(12) }).result;
  const long = rt.scheduler.submit({ promptIds: prompt('Once more unto the breach'), sampling: greedy(40) });
  // Wait until the long one is decoding, then join.
  for await (const event of long) if (event.tokenId >= 0) break;
  steps.length = 0;
  const joined = await rt.scheduler.submit({ promptIds: prompt('Good morrow'), sampling: greedy(12) }).result;
  await long.result;
  assert.deepEqual(joined.tokenIds, alone.tokenIds);
  assert.ok(steps.some((s) => s.kind === 'decode' && s.rows === 2), 'the two sequences shared decode steps');
});

test('same seed gives the same sampled text; another seed differs', async () => {
  const sample = (seed: number) =>
    rt.scheduler.submit({ promptIds: prompt('The king'), sampling: greedy(24, { temperature: 1, topP: 0.95, seed }) }).result;
  const [a, b, c] = await Promise.all([sample(11), sample(11), sample(12)]);
  assert.deepEqual(a.tokenIds, b.tokenIds);
  assert.notDeepEqual(a.tokenIds, c.tokenIds);
});

test('stop strings end generation before the match and are not returned', async () => {
  const free = await rt.scheduler.submit({ promptIds: prompt('The queen'), sampling: greedy(30) }).result;
  const stop = free.text.slice(8, 10);
  assert.ok(stop.length === 2, 'reference text long enough');
  const stopped = await rt.scheduler.submit({ promptIds: prompt('The queen'), sampling: greedy(30, { stop: [stop] }) }).result;
  assert.equal(stopped.finishReason, 'stop');
  assert.equal(stopped.text, free.text.slice(0, free.text.indexOf(stop)));
  let streamed = '';
  for await (const e of rt.scheduler.submit({ promptIds: prompt('The queen'), sampling: greedy(30, { stop: [stop] }) })) streamed += e.text;
  assert.equal(streamed, stopped.text, 'streamed text never leaks part of a stop string');
});

test('max_tokens ends with finish_reason length and exact usage', async () => {
  const r = await rt.scheduler.submit({ promptIds: prompt('Hark'), sampling: greedy(5) }).result;
  assert.equal(r.finishReason, 'length');
  assert.equal(r.completionTokens, 5);
  assert.equal(r.promptTokens, prompt('Hark').length);
});

test('a cancelled sequence leaves the batch at the next step', async () => {
  const controller = new AbortController();
  const other = rt.scheduler.submit({ promptIds: prompt('Friends, Romans'), sampling: greedy(60) });
  const doomed = rt.scheduler.submit({ promptIds: prompt('Countrymen'), sampling: greedy(200), signal: controller.signal });
  let seen = 0;
  for await (const _ of doomed) if (++seen === 3) controller.abort();
  const result = await doomed.result;
  assert.equal(result.finishReason, 'cancelled');
  assert.ok(result.completionTokens < 10, `stopped after ${result.completionTokens} tokens`);
  assert.equal(rt.scheduler.activeCount, 1, 'only the other sequence is still in the batch');
  await other.result;
  assert.equal(rt.scheduler.activeCount, 0);
});

test('a full queue answers 429 and an over-long request 400, changing nothing', async () => {
  const running = [];
  for (let i = 0; i < 4; i++) {
    running.push(rt.scheduler.submit({ promptIds: prompt('a'), sampling: greedy(60) }));
    while (rt.scheduler.activeCount < i + 1) await new Promise((r) => setTimeout(r, 1));
  }
  const queued = Array.from({ length: 3 }, () => rt.scheduler.submit({ promptIds: prompt('b'), sampling: greedy(2) }));
  assert.throws(
    () => rt.scheduler.submit({ promptIds: prompt('c'), sampling: greedy(2) }),
    (e: unknown) => e instanceof PatchbayError && e.status === 429 && e.code === 'queue_full',
  );
  assert.throws(
    () => rt.scheduler.submit({ promptIds: prompt('d'), sampling: greedy(rt.model.contextLength) }),
    (e: unknown) => e instanceof PatchbayError && e.status === 400 && e.param === 'max_tokens',
  );
  await Promise.all([...running, ...queued].map((h) => h.result));
});

test('max_queue counts only requests no free slot will take: 0 means "no waiting", not "refuse all"', async () => {
  const local = await loadRuntime({ modelDir: 'models/tiny-llama', device: 'cpu', maxBatch: 1, maxQueue: 0, threads: 1 });
  const first = local.scheduler.submit({ promptIds: prompt('One'), sampling: greedy(20) });
  assert.throws(
    () => local.scheduler.submit({ promptIds: prompt('Two'), sampling: greedy(2) }),
    (e: unknown) => e instanceof PatchbayError && e.status === 429,
  );
  assert.equal((await first.result).completionTokens, 20);
  const again = await local.scheduler.submit({ promptIds: prompt('Three'), sampling: greedy(2) }).result;
  assert.equal(again.completionTokens, 2, 'a free slot takes the next request');
  await local.close();
});

test('drain finishes in-flight work and then refuses new requests with 503', async () => {
  const local = await loadRuntime({ modelDir: 'models/tiny-llama', device: 'cpu', maxBatch: 2, maxQueue: 4, threads: 1 });
  const inflight = local.scheduler.submit({ promptIds: prompt('Farewell'), sampling: greedy(20) });
  await local.scheduler.drain();
  assert.equal((await inflight.result).completionTokens, 20);
  assert.throws(
    () => local.scheduler.submit({ promptIds: prompt('x'), sampling: greedy(2) }),
    (e: unknown) => e instanceof PatchbayError && e.status === 503,
  );
  await local.close();
});
