/**
 * bench/tracing — what tracing costs a request, side by side in one process:
 *   1. N completions through `app.request` (no socket) with tracing off vs on (the real BatchSpanProcessor,
 *      exporting to an in-memory exporter), rounds interleaved in alternating order so machine noise hits
 *      both alike; medians of per-round means and their ratio. Requests alternate between the base model
 *      and an adapter (a cache hit after the first), so adapter hooks run too.
 *   2. The tracing calls one request makes (request span start / submitted / end with its three children),
 *      timed alone in a tight loop, off and on: their cost per request, next to a request's time.
 *
 *   npx tsx bench/tracing.ts [--requests 40] [--rounds 7] [--tokens 16] [--threads 2]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { loadRuntime } from '../src/runtime/index.ts';
import { createAdapterServing } from '../src/server/adapter-serving.ts';
import { createApp } from '../src/server/app.ts';
import { createLogger } from '../src/server/logging.ts';
import { ServerMetrics } from '../src/server/metrics.ts';
import { ServingState } from '../src/server/state.ts';
import { GenerationSpan } from '../src/telemetry/generation-span.ts';
import { startTracing } from '../src/telemetry/tracing.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '7' },
    tokens: { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
  },
});
const requests = Number(args.requests);
const rounds = Number(args.rounds);
const tokens = Number(args.tokens);

const modelDir = join(import.meta.dirname, '..', 'models', 'tiny-gpt2');
const adapterDir = join(import.meta.dirname, '..', 'adapters');
const logger = createLogger('silent');
const metrics = new ServerMetrics();
const state = new ServingState();
const app = createApp({ state, metrics, logger, maxBodyBytes: 1 << 20 });
const runtime = await loadRuntime({ modelDir, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: Number(args.threads) });
const serving = await createAdapterServing({ runtime, rewrite: runtime.rewrite, deltaTargets: undefined, adapterDir, cacheBytes: 64 << 20, metrics, logger });
state.markReady(serving);

const models = [runtime.model.id, 'lora-comedy'];
async function complete(i: number): Promise<void> {
  const res = await app.request('/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: models[i % models.length], prompt: 'HAMLET.\nTo be, or not', max_tokens: tokens, temperature: 0, ignore_eos: true }),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
}

/** Counts what it is handed: the in-memory exporter forgets its spans on shutdown. */
class CountingExporter extends InMemorySpanExporter {
  count = 0;
  override export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    this.count += spans.length;
    super.export(spans, done);
  }
}

/** Mean milliseconds per request over one round of `requests` sequential completions. */
async function round(traced: boolean): Promise<{ ms: number; spans: number }> {
  const exporter = new CountingExporter();
  const tracing = traced ? startTracing({ serviceName: 'patchbay-bench', exporter }) : undefined;
  const started = performance.now();
  for (let i = 0; i < requests; i++) await complete(i);
  const ms = (performance.now() - started) / requests;
  await tracing?.shutdown();
  return { ms, spans: exporter.count };
}

// Warm-up: first adapter load, JIT, ORT arenas; tracing on once so the SDK's code paths are warm as well.
await round(false);
await round(true);

const off: number[] = [];
const on: number[] = [];
let spansPerRequest = 0;
for (let r = 0; r < rounds; r++) {
  for (const traced of r % 2 === 0 ? [false, true] : [true, false]) {
    const { ms, spans } = await round(traced);
    (traced ? on : off).push(ms);
    if (traced) spansPerRequest = spans / requests;
  }
}

// The off path alone: what Generation.start / the result callback call on the tracing API per request.
const headers = new Headers({ 'content-type': 'application/json' });
const result = { text: '', tokenIds: [], promptTokens: 8, completionTokens: tokens, finishReason: 'length' as const, baseVersion: 1, queueMs: 0.1, prefillMs: 2 };
const spanCalls = (loops: number) => {
  const t0 = performance.now();
  for (let i = 0; i < loops; i++) {
    const span = GenerationSpan.start({ operation: 'text_completion', model: 'tiny-gpt2', stream: false, requestId: 'r', headers, startTime: t0 });
    span.within(() => undefined);
    span.submitted({ model: 'tiny-gpt2', servedBy: 'base', maxTokens: tokens, temperature: 0, topP: 1, topK: 0 });
    span.end(result);
  }
  return ((performance.now() - t0) * 1e3) / loops;
};
spanCalls(200_000);
const offPathUs = median([spanCalls(200_000), spanCalls(200_000), spanCalls(200_000)]);
/** The same calls recording: 400 requests' spans fit the batch queue (2048), so none is dropped. */
const onPath = async () => {
  const tracing = startTracing({ serviceName: 'patchbay-bench', exporter: new CountingExporter() });
  const us = spanCalls(400);
  await tracing.shutdown();
  return us;
};
await onPath();
const onPathSamples: number[] = [];
for (let i = 0; i < 5; i++) onPathSamples.push(await onPath());
const onPathUs = median(onPathSamples);

const w = [34, 12];
console.log(`tiny-gpt2, ${tokens} tokens per completion (ignore_eos), ${requests} sequential requests per round, ${rounds} rounds interleaved`);
console.log(row(['', 'ms/request'], w));
console.log(row(['tracing off (no provider)', median(off)], w));
console.log(row(['tracing on (batch → in-memory)', median(on)], w));
console.log(row(['ratio on / off', median(on) / median(off)], w));
console.log(`per-round ms off: ${off.map((x) => x.toFixed(2)).join(' ')}`);
console.log(`per-round ms on:  ${on.map((x) => x.toFixed(2)).join(' ')}`);
console.log(`spans per request when on: ${spansPerRequest.toFixed(2)}`);
const share = (us: number) => `${((us / 1e3 / median(off)) * 100).toFixed(4)} % of a request`;
console.log(`request-span calls per request, off: ${offPathUs.toFixed(2)} µs = ${share(offPathUs)}`);
console.log(`request-span calls per request, on:  ${onPathUs.toFixed(2)} µs = ${share(onPathUs)}`);

serving.adapters.close();
await runtime.close();
