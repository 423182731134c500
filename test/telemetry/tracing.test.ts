/**
 * Tracing end to end on the real runtime and the committed demo adapters: the spans a request, an adapter
 * load, a combination and an eviction produce, read back from the SDK's InMemorySpanExporter. First, before
 * the test registers a provider of its own: no endpoint registers nothing, an endpoint exports over OTLP/HTTP,
 * and shutdown flushes, never rejects and is bounded.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { context, createContextKey, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { pino } from 'pino';
import { startTracing, tracer, tracesUrl } from '../../src/telemetry/tracing.ts';
import { REPO_ROOT } from '../registry/fixtures.ts';
import { startAdapterServer, type AdapterServer } from '../server/adapter-server.ts';

const ADAPTERS = path.join(REPO_ROOT, 'adapters');
const BASE = 'tiny-gpt2';

test('with no endpoint, startTracing registers nothing: no provider, context manager or propagator', async () => {
  const tracing = startTracing({ serviceName: 'patchbay' });
  assert.equal(tracing.enabled, false);
  const provider = trace.getTracerProvider();
  assert.ok(provider instanceof ProxyTracerProvider);
  assert.equal(provider.getDelegateTracer('patchbay'), undefined, 'no provider behind the API');
  assert.equal(tracer().startSpan('x').isRecording(), false, 'spans are the no-op stub');
  const ctx = ROOT_CONTEXT.setValue(createContextKey('k'), 1);
  assert.equal(context.with(ctx, () => context.active()), ROOT_CONTEXT, 'no context manager');
  assert.deepEqual(propagation.fields(), [], 'no propagator');
  await tracing.shutdown();
});

test('the OTLP traces URL is the endpoint plus v1/traces', () => {
  assert.equal(tracesUrl('http://collector:4318'), 'http://collector:4318/v1/traces');
  assert.equal(tracesUrl('http://collector:4318/'), 'http://collector:4318/v1/traces');
  assert.equal(tracesUrl('https://gw.example/otlp'), 'https://gw.example/otlp/v1/traces');
});

test('with an endpoint, spans are batched and posted to <endpoint>/v1/traces; shutdown flushes, is idempotent and unregisters', async () => {
  const received: { url: string | undefined; body: string }[] = [];
  const collector = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      received.push({ url: req.url, body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = collector.address() as AddressInfo;
    const tracing = startTracing({ endpoint: `http://127.0.0.1:${port}`, serviceName: 'patchbay-test' });
    assert.equal(tracing.enabled, true);
    const span = tracer().startSpan('probe');
    assert.equal(span.isRecording(), true);
    span.end();
    assert.equal(received.length, 0, 'batched, not sent per span');
    await Promise.all([tracing.shutdown(), tracing.shutdown()]);
    await tracing.shutdown();
    assert.equal(received.length, 1);
    assert.equal(received[0]!.url, '/v1/traces');
    assert.match(received[0]!.body, /"name":"probe"/);
    assert.match(received[0]!.body, /"service\.name".*"patchbay-test"/);
    assert.equal(tracer().startSpan('after').isRecording(), false, 'unregistered after shutdown');
  } finally {
    collector.closeAllConnections();
    await new Promise((resolve) => collector.close(resolve));
  }
});

/** An exporter that answers `code` after `ms` (0/1 = SUCCESS/FAILED, as @opentelemetry/core's ExportResultCode). */
function answering(code: 0 | 1, ms: number): SpanExporter {
  return {
    export(_spans, done) {
      setTimeout(() => done({ code }), ms).unref();
    },
    shutdown: () => Promise.resolve(),
  };
}

test('shutdown never rejects: a failed last export is logged, not thrown', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const tracing = startTracing({ serviceName: 'patchbay-test', exporter: answering(1, 0), logger });
  tracer().startSpan('lost').end();
  await tracing.shutdown();
  assert.ok(lines.some((l) => l.includes('could not export the last spans') && l.includes('"component":"tracing"')), lines.join(''));
  assert.equal(tracer().startSpan('after').isRecording(), false, 'unregistered all the same');
});

test('shutdown waits for a slow collector no longer than its deadline', async () => {
  const tracing = startTracing({ serviceName: 'patchbay-test', exporter: answering(0, 1_000), shutdownTimeoutMillis: 100 });
  tracer().startSpan('late').end();
  const started = performance.now();
  await tracing.shutdown();
  assert.ok(performance.now() - started < 800, 'bounded by the deadline, not the export');
  assert.equal(tracer().startSpan('after').isRecording(), false);
});

describe('spans of a serving process', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let s: AdapterServer;

  before(async () => {
    provider.register();
    s = await startAdapterServer({ model: BASE, adapterDir: ADAPTERS });
  });
  after(async () => {
    await s?.close();
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  /** Runs one request and returns the spans it finished. */
  async function traced(body: Record<string, unknown>, server = s, headers: Record<string, string> = {}) {
    exporter.reset();
    const res = await server.app.request('/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ prompt: 'HAMLET.\nTo be, or not', max_tokens: 6, temperature: 0, ignore_eos: true, ...body }),
    });
    const json = (await res.json()) as { usage?: { prompt_tokens: number; completion_tokens: number }; error?: { message: string } };
    await provider.forceFlush();
    const spans = exporter.getFinishedSpans();
    return { res, json, spans, named: (name: string) => spans.filter((sp) => sp.name === name) };
  }

  const only = (spans: ReadableSpan[]): ReadableSpan => {
    assert.equal(spans.length, 1, `expected one span, got ${spans.map((sp) => sp.name).join(', ') || 'none'}`);
    return spans[0]!;
  };
  const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
  const requestSpan = (spans: ReadableSpan[]) => only(spans.filter((sp) => sp.attributes['gen_ai.operation.name'] !== undefined));
  const ns = (t: [number, number]) => t[0] * 1e9 + t[1];

  test('a completion has a request span with GenAI attributes and queue / prefill / decode children', async () => {
    const { res, json, spans, named } = await traced({ model: BASE });
    assert.equal(res.status, 200, json.error?.message);
    const req = requestSpan(spans);
    assert.equal(req.name, `text_completion ${BASE}`);
    assert.equal(req.kind, SpanKind.SERVER);
    assert.equal(req.attributes['gen_ai.request.model'], BASE);
    assert.equal(req.attributes['gen_ai.response.model'], BASE);
    assert.equal(req.attributes['gen_ai.usage.input_tokens'], json.usage!.prompt_tokens);
    assert.equal(req.attributes['gen_ai.usage.output_tokens'], 6);
    assert.deepEqual(req.attributes['gen_ai.response.finish_reasons'], ['length']);
    assert.equal(req.attributes['gen_ai.request.max_tokens'], 6);
    assert.equal(req.attributes['gen_ai.request.stream'], false);
    assert.equal(req.attributes['patchbay.base.version'], Number(res.headers.get('x-patchbay-base-version')));
    assert.equal(req.attributes['patchbay.served_by'], 'base');
    assert.equal(req.attributes['patchbay.request.id'], res.headers.get('x-request-id'));

    const [queue, prefill, decode] = ['generation.queue', 'generation.prefill', 'generation.decode'].map((n) => only(named(n)));
    for (const child of [queue!, prefill!, decode!]) {
      assert.equal(parentOf(child), req.spanContext().spanId, `${child.name} is a child of the request`);
      assert.equal(child.spanContext().traceId, req.spanContext().traceId);
      assert.ok(ns(child.startTime) >= ns(req.startTime) && ns(child.endTime) <= ns(req.endTime), `${child.name} lies within the request`);
    }
    assert.ok(ns(queue!.endTime) <= ns(prefill!.startTime) + 1 && ns(prefill!.endTime) <= ns(decode!.startTime) + 1, 'in order');
    assert.equal(prefill!.attributes['patchbay.tokens'], json.usage!.prompt_tokens);
    assert.equal(decode!.attributes['patchbay.tokens'], 6);
  });

  test("a caller's traceparent makes the request span its child", async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const { spans } = await traced({ model: BASE }, s, { traceparent: `00-${traceId}-b7ad6b7169203331-01` });
    const req = requestSpan(spans);
    assert.equal(req.spanContext().traceId, traceId);
    assert.equal(parentOf(req), 'b7ad6b7169203331');
  });

  test('an adapter is an adapter.load span (miss) the first time, a cache-hit event on the request after', async () => {
    const first = await traced({ model: 'lora-comedy' });
    assert.equal(first.res.status, 200, first.json.error?.message);
    const req = requestSpan(first.spans);
    assert.equal(req.name, 'text_completion lora-comedy');
    assert.equal(req.attributes['patchbay.served_by'], 'lora');
    assert.equal(req.attributes['patchbay.adapter.key'], 'lora-comedy');
    const load = only(first.named('adapter.load'));
    assert.equal(parentOf(load), req.spanContext().spanId, 'the load is part of the request that caused it');
    assert.equal(load.attributes['patchbay.adapter.id'], 'lora-comedy');
    assert.equal(load.attributes['patchbay.adapter.kind'], 'lora');
    assert.equal(load.attributes['patchbay.adapter.rank'], 8);
    assert.equal(load.attributes['patchbay.adapter.bytes'], s.registry.get('lora-comedy')?.bytes);
    assert.equal(load.attributes['patchbay.cache.hit'], false);
    assert.ok(ns(load.endTime) > ns(load.startTime), 'timed from the measured load');
    assert.equal(req.events.filter((e) => e.name === 'adapter.cache_hit').length, 0);

    const second = await traced({ model: 'lora-comedy' });
    assert.equal(second.named('adapter.load').length, 0, 'a hit loads nothing');
    const hits = requestSpan(second.spans).events.filter((e) => e.name === 'adapter.cache_hit');
    assert.deepEqual(hits.map((e) => e.attributes), [{ 'patchbay.adapter.key': 'lora-comedy', 'patchbay.cache.type': 'adapter' }]);
  });

  test('a combination is an adapter.merge span with ids, weights and the resulting rank; then a hit', async () => {
    const adapters = [{ id: 's2ft-histories', weight: 0.5 }, { id: 'lora-comedy', weight: 0.5 }];
    const first = await traced({ model: BASE, adapters });
    assert.equal(first.res.status, 200, first.json.error?.message);
    const req = requestSpan(first.spans);
    assert.equal(req.attributes['patchbay.served_by'], 'combination');
    const merge = only(first.named('adapter.merge'));
    assert.equal(parentOf(merge), req.spanContext().spanId);
    assert.deepEqual(merge.attributes['patchbay.adapter.ids'], ['lora-comedy', 's2ft-histories'], 'canonical order');
    assert.deepEqual(merge.attributes['patchbay.adapter.weights'], [0.5, 0.5]);
    const ranks = ['lora-comedy', 's2ft-histories'].map((id) => s.registry.get(id)!.rank!);
    const rank = merge.attributes['patchbay.adapter.rank'] as number;
    assert.ok(rank >= Math.max(...ranks) && rank <= ranks[0]! + ranks[1]!, `rank ${rank} from parts ${ranks}`);
    assert.ok((merge.attributes['patchbay.adapter.bytes'] as number) > 0);
    assert.equal(merge.attributes['patchbay.cache.hit'], false);
    assert.equal(req.attributes['patchbay.adapter.key'], merge.attributes['patchbay.adapter.key']);
    // lora-comedy is resident from the test before; s2ft-histories is loaded now.
    assert.equal(only(first.named('adapter.load')).attributes['patchbay.adapter.id'], 's2ft-histories');

    const again = await traced({ model: BASE, adapters });
    assert.equal(again.named('adapter.merge').length, 0);
    const events = requestSpan(again.spans).events.filter((e) => e.name === 'adapter.cache_hit');
    assert.deepEqual(events.map((e) => e.attributes?.['patchbay.cache.type']).sort(), ['adapter', 'adapter', 'combination']);
  });

  test('an unknown model ends the request span with error.type, unqueued (a client error, no ERROR status)', async () => {
    const { res, spans } = await traced({ model: 'no-such-adapter' });
    assert.equal(res.status, 404);
    const req = requestSpan(spans);
    assert.equal(req.name, 'text_completion', 'not named after client input that did not resolve');
    assert.equal(req.attributes['error.type'], 'model_not_found');
    assert.equal(req.status.code, SpanStatusCode.UNSET);
    assert.equal(spans.filter((sp) => sp.name.startsWith('generation.')).length, 0);
  });

  test('a cache budget too small for two adapters evicts the older: an adapter.evict span in the request that did it', async () => {
    assert.equal((await traced({ model: 'lora-tragedy' })).res.status, 200);
    const [comedy, tragedy] = ['lora-comedy', 'lora-tragedy'].map((id) => s.registry.get(id)!.bytes!);
    const small = await startAdapterServer({ model: BASE, adapterDir: ADAPTERS, cacheBytes: comedy! + tragedy! - 1 });
    try {
      assert.equal((await traced({ model: 'lora-comedy' }, small)).named('adapter.evict').length, 0);
      const next = await traced({ model: 'lora-tragedy' }, small);
      assert.equal(next.res.status, 200, next.json.error?.message);
      const evict = only(next.named('adapter.evict'));
      assert.deepEqual(evict.attributes, { 'patchbay.adapter.key': 'lora-comedy', 'patchbay.adapter.bytes': comedy, 'patchbay.evict.reason': 'evict' });
      assert.equal(parentOf(evict), requestSpan(next.spans).spanContext().spanId);
      assert.equal(small.registry.isResident('lora-comedy'), false);
    } finally {
      await small.close();
    }
  });
});
