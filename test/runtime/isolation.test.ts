/**
 * Failure isolation and cancellation in the scheduler, with controlled interleavings: the real engine of
 * the tiny Llama model, wrapped only to hold a run at a gate or to inject a fault into the runs that
 * carry one chosen row (a row is recognised by its cache length), so the order of events is exact.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { KvCache } from '../../src/runtime/kv-layout.ts';
import type { Engine } from '../../src/runtime/engine.ts';
import { loadRuntime, type Runtime, type SamplingParams, type StepEvent } from '../../src/runtime/index.ts';
import { InvalidGenerationError } from '../../src/runtime/request-validation.ts';
import { ContinuousBatchScheduler } from '../../src/runtime/scheduler.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';

let rt: Runtime;
let engine: Engine;
before(async () => {
  rt = await loadRuntime({ modelDir: 'models/tiny-llama', device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1 });
  const lease = rt.versions.acquire();
  engine = lease.version.engine;
  lease.release();
});
after(() => rt.close());

const greedy = (maxTokens: number): SamplingParams => ({ maxTokens, temperature: 0, topP: 1, topK: 0, stop: [] });
const ids = (text: string) => rt.tokenizer.encode(text);

interface Hooks {
  /** Awaited before every run; `decode` = one new token per row. */
  before?: (kv: KvCache, decode: boolean) => Promise<void> | void;
}

function schedulerWith(hooks: Hooks, steps: StepEvent[] = []) {
  const wrapped = Object.create(engine) as Engine;
  wrapped.forward = async (kv, tokens, feeds) => {
    await hooks.before?.(kv, tokens.every((t) => t.length === 1) && kv.lens.some((l) => l > 0));
    return engine.forward(kv, tokens, feeds);
  };
  const source = { acquire: () => ({ version: { id: 1, engine: wrapped }, release() {} }) };
  return new ContinuousBatchScheduler(source, rt.tokenizer, {
    maxBatch: 4,
    maxQueue: 8,
    contextLength: rt.model.contextLength,
    eosTokenIds: rt.model.eosTokenIds,
    deltaLayers: rt.deltaLayers,
    vocabSize: rt.model.vocabSize,
    onStep: (e) => steps.push(e),
  });
}

test('a newcomer whose prefill fails fails alone; the others of its prefill batch are served', async () => {
  const layer = rt.deltaLayers[0]!;
  // Factors whose sizes do not match the layer: building the batch's feeds throws for this row.
  const bad: DeltaBinding = { key: 'bad', layers: new Map([[layer.name, { rank: 2, a: new Float32Array(3), b: new Float32Array(3) }]]) };
  const alone = await rt.scheduler.submit({ promptIds: ids('Good morrow'), sampling: greedy(6) }).result;
  const s = schedulerWith({});
  const good1 = s.submit({ promptIds: ids('Good morrow'), sampling: greedy(6) });
  const poisoned = s.submit({ promptIds: ids('Good morrow'), sampling: greedy(6), delta: bad });
  const good2 = s.submit({ promptIds: ids('Good morrow'), sampling: greedy(6) });
  await assert.rejects(poisoned.result, /delta binding bad/);
  assert.deepEqual((await good1.result).tokenIds, alone.tokenIds);
  assert.deepEqual((await good2.result).tokenIds, alone.tokenIds);
});

test('a decode failure is retried without the row that caused it; the others finish unchanged', async () => {
  const poisonPrompt = ids('Once more unto the breach, dear friends, once more');
  const P = poisonPrompt.length;
  const alone = await rt.scheduler.submit({ promptIds: ids('Hark'), sampling: greedy(8) }).result;
  // Fails every decode run whose batch holds a row with exactly P cached positions: only the poisoned row.
  const s = schedulerWith({ before: (kv, decode) => { if (decode && kv.lens.includes(P)) throw new Error('injected fault'); } });
  const others = [s.submit({ promptIds: ids('Hark'), sampling: greedy(8) }), s.submit({ promptIds: ids('Hark'), sampling: greedy(8) })];
  const poisoned = s.submit({ promptIds: poisonPrompt, sampling: greedy(8) });
  await assert.rejects(poisoned.result, /injected fault/);
  for (const o of others) assert.deepEqual((await o.result).tokenIds, alone.tokenIds);
});

test('an already-aborted request is cancelled at submit and never reaches a prefill', async () => {
  const steps: StepEvent[] = [];
  const s = schedulerWith({}, steps);
  const handle = s.submit({ promptIds: ids('Hark'), sampling: greedy(4), signal: AbortSignal.abort() });
  assert.equal((await handle.result).finishReason, 'cancelled');
  assert.equal(s.queuedCount, 0);
  assert.equal(steps.length, 0);
});

test('cancelled while queued behind a running prefill: never prefilled', async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const prefills: number[] = [];
  const s = schedulerWith({ before: async (kv, decode) => { if (!decode) { prefills.push(kv.rows); await gate; } } });
  const first = s.submit({ promptIds: ids('Hark'), sampling: greedy(3) });
  await new Promise((r) => setImmediate(r)); // the loop is now inside the first prefill, held at the gate
  const abort = new AbortController();
  const queued = s.submit({ promptIds: ids('Good morrow'), sampling: greedy(3), signal: abort.signal });
  abort.abort();
  open();
  assert.equal((await queued.result).finishReason, 'cancelled');
  assert.equal((await first.result).finishReason, 'length');
  assert.deepEqual(prefills, [1], 'only the first request was ever prefilled');
});

test('cancelled during its prefill run: leaves without sampling or decoding', async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const steps: StepEvent[] = [];
  const abort = new AbortController();
  const s = schedulerWith({ before: async (_kv, decode) => { if (!decode) await gate; } }, steps);
  const handle = s.submit({ promptIds: ids('Hark'), sampling: greedy(5), signal: abort.signal });
  await new Promise((r) => setImmediate(r));
  abort.abort();
  open();
  const result = await handle.result;
  assert.equal(result.finishReason, 'cancelled');
  assert.equal(result.completionTokens, 0);
  assert.equal(steps.filter((e) => e.kind === 'decode').length, 0);
});

test('token ids and sampling values are validated by the runtime itself', () => {
  const bad = [
    { promptIds: [rt.model.vocabSize], sampling: greedy(2), param: 'promptIds' },
    { promptIds: [-1], sampling: greedy(2), param: 'promptIds' },
    { promptIds: [1.5], sampling: greedy(2), param: 'promptIds' },
    { promptIds: [1], sampling: { ...greedy(2), temperature: Number.NaN }, param: 'temperature' },
    { promptIds: [1], sampling: { ...greedy(2), stop: ['x'.repeat(5000)] }, param: 'stop' },
    { promptIds: [1], sampling: greedy(-1), param: 'maxTokens' },
    { promptIds: [1], sampling: { ...greedy(2), stopTokenIds: [-3] }, param: 'stopTokenIds' },
  ];
  for (const { param, ...req } of bad) {
    assert.throws(() => rt.scheduler.submit(req), (e: unknown) => e instanceof InvalidGenerationError && e.param === param, param);
  }
  assert.equal(rt.scheduler.queuedCount, 0);
});
