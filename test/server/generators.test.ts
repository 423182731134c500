/**
 * Generators through the HTTP API on the real runtime, with the shipped generator from adapters/ and its
 * PyTorch fixture: listing (admin and /v1/models), serving string and vector conditions (greedy text equal to
 * PyTorch's), mixed batches, the factor cache, metrics, and every refused condition leaving serving unchanged.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { SPAN } from '../../src/telemetry/attributes.ts';
import { metricValue } from './helpers.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';
import { removeTempDirs } from '../registry/fixtures.ts';

interface Fixture {
  generator: string;
  cases: Array<{ condition: string | number[]; prompts: Array<{ text: string; greedy: number[] }> }>;
}
const fx = JSON.parse(readFileSync('test/fixtures/generators/gen-speaker.json', 'utf8')) as Fixture;
const GEN = fx.generator;
const BASE = 'tiny-gpt2';
const TOKEN = 'gen-secret';
let s: AdapterServer;
const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

before(async () => {
  provider.register();
  s = await startAdapterServer({ model: BASE, adapterDir: 'adapters', adminToken: TOKEN });
});
after(async () => {
  await s?.close();
  await provider.shutdown();
  await removeTempDirs();
});

const completion = (body: Record<string, unknown>) =>
  request(s.app, 'POST', '/v1/completions', { prompt: fx.cases[0]!.prompts[0]!.text, max_tokens: 16, temperature: 0, ignore_eos: true, ...body });

async function text(body: Record<string, unknown>): Promise<string> {
  const res = await completion(body);
  const json = (await res.json()) as { model: string; choices: { text: string }[] } & Partial<ErrorBody>;
  assert.equal(res.status, 200, json.error?.message);
  return json.choices[0]!.text;
}

async function expectError(res: Response, status: number, code: string, param: string | null, pattern?: RegExp): Promise<void> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, body.error.message);
  assert.deepEqual([body.error.code, body.error.param], [code, param], body.error.message);
  if (pattern) assert.match(body.error.message, pattern);
}

test('the shipped generator is listed by /admin/generators (with examples) and in /v1/models with parent = base', async () => {
  const res = await request(s.app, 'GET', '/admin/generators', undefined, TOKEN);
  assert.equal(res.status, 200);
  const list = (await res.json()) as { data: Array<{ id: string; examples: string[]; condition_dim: number; rank: number; base_model: string }> };
  const g = list.data.find((e) => e.id === GEN);
  assert.ok(g, `${GEN} listed`);
  assert.ok(g.examples.length >= 2);
  assert.equal(g.base_model, BASE);
  const models = (await (await request(s.app, 'GET', '/v1/models')).json()) as { data: Array<{ id: string; parent: string | null }> };
  assert.equal(models.data.find((m) => m.id === GEN)?.parent, BASE);
  assert.ok(!models.data.some((m) => m.id === GEN && m.parent === null));
  const card = (await (await request(s.app, 'GET', `/v1/models/${GEN}`)).json()) as { id: string; parent: string };
  assert.deepEqual([card.id, card.parent], [GEN, BASE]);
  assert.equal((await request(s.app, 'GET', '/admin/generators')).status, 401, 'admin routes need the token');
});

test('served greedy text equals PyTorch greedy for every fixture condition (string and vector), through the KV cache', async () => {
  for (const c of fx.cases) {
    const p = c.prompts[0]!;
    const want = s.runtime.tokenizer.decode(p.greedy);
    assert.equal(await text({ model: GEN, condition: c.condition, prompt: p.text, max_tokens: p.greedy.length }), want, `condition ${JSON.stringify(c.condition).slice(0, 40)}`);
  }
});

test('chat completions and streams take a condition too', async () => {
  const condition = fx.cases[0]!.condition;
  const chat = await request(s.app, 'POST', '/v1/chat/completions', { model: GEN, condition, messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 6, temperature: 0 });
  const body = (await chat.json()) as { model: string } & Partial<ErrorBody>;
  assert.equal(chat.status, 200, body.error?.message);
  assert.equal(body.model, GEN);
  const streamed = await completion({ model: GEN, condition, stream: true });
  assert.equal(streamed.status, 200);
  const textOf = (sse: string) => sse.split('\n').filter((l) => l.startsWith('data: {')).map((l) => (JSON.parse(l.slice(6)) as { choices: { text: string }[] }).choices[0]?.text ?? '').join('');
  assert.equal(textOf(await streamed.text()), await text({ model: GEN, condition }));
});

test('concurrent requests mixing conditions, the base and an adapter each get their solo answer', async () => {
  const rows = [
    { model: GEN, condition: fx.cases[0]!.condition },
    { model: GEN, condition: fx.cases[1]!.condition },
    { model: GEN, condition: fx.cases[2]!.condition },
    { model: BASE },
    { model: 'lora-comedy' },
  ];
  // Every fixture prompt, so that the conditions' rows really differ somewhere (a row mix-up would show).
  const bodies = fx.cases[0]!.prompts.flatMap((p) => rows.map((r) => ({ ...r, prompt: p.text })));
  const solo: string[] = [];
  for (const b of bodies) solo.push(await text(b));
  const byCondition = (i: number) => solo.filter((_, k) => k % rows.length === i).join('|');
  assert.notEqual(byCondition(0), byCondition(1), 'two conditions, two texts');
  const together = await Promise.all([...bodies, ...bodies].map((b) => text(b)));
  assert.deepEqual(together, [...solo, ...solo]);
});

test('each lookup is an adapter.generate span under the request: generator id, condition hash, cache hit, seconds', async () => {
  const condition = [...(fx.cases.find((c) => Array.isArray(c.condition))!.condition as number[])];
  condition[0] = condition[0]! + 0.5; // a condition no other test used: the first lookup is a miss
  exporter.reset();
  await text({ model: GEN, condition });
  await text({ model: GEN, condition });
  await provider.forceFlush();
  const spans = exporter.getFinishedSpans();
  const generated = spans.filter((x) => x.name === SPAN.adapterGenerate);
  assert.equal(generated.length, 2);
  const [miss, hit] = generated as [(typeof generated)[0], (typeof generated)[0]];
  assert.equal(miss.attributes['patchbay.generator.id'], GEN);
  assert.match(String(miss.attributes['patchbay.condition.hash']), /^[0-9a-f]{16}$/);
  assert.equal(hit.attributes['patchbay.condition.hash'], miss.attributes['patchbay.condition.hash']);
  assert.deepEqual([miss.attributes['patchbay.cache.hit'], hit.attributes['patchbay.cache.hit']], [false, true]);
  assert.ok(Number(miss.attributes['patchbay.generate.seconds']) > 0);
  const requests = spans.filter((x) => x.name === `text_completion ${GEN}`);
  assert.equal(requests.length, 2);
  assert.equal(miss.parentSpanContext?.spanId, requests[0]!.spanContext().spanId, 'a child of its request span');
});

test('generated factors are cached by condition, counted in /metrics, and share the adapter byte budget', async () => {
  const condition = fx.cases[0]!.condition;
  const metrics = async () => (await (await request(s.app, 'GET', '/metrics')).text());
  const before = await metrics();
  const hits0 = metricValue(before, 'patchbay_generator_generations_total', { generator: GEN, cache: 'hit' }) ?? 0;
  await text({ model: GEN, condition });
  await text({ model: GEN, condition: String(condition).toLowerCase() }); // same vector after case folding
  const after = await metrics();
  assert.equal(metricValue(after, 'patchbay_generator_generations_total', { generator: GEN, cache: 'hit' }), hits0 + 2);
  assert.ok((metricValue(after, 'patchbay_generator_generate_duration_seconds_count', { cache: 'miss' }) ?? 0) >= 1);
  const resident = s.registry.stats();
  assert.ok(resident.residentBytes > 0 && resident.resident >= fx.cases.length, 'generated factors live in the shared cache');
});

test('bad conditions are refused with a 4xx naming them, and change nothing', async () => {
  const condition = fx.cases[0]!.condition;
  const reference = await text({ model: GEN, condition });
  const stats = s.registry.stats();
  const cases: Array<[Record<string, unknown>, number, string, string | null, RegExp?]> = [
    [{ model: GEN, condition: Array.from({ length: 1001 }, (_, i) => i + 1) }, 400, 'condition_dimension_mismatch', 'condition', /got 1001/],
    [{ model: GEN, condition: ['not a number'] }, 400, 'invalid_value', 'condition'],
    [{ model: GEN, condition: [] }, 400, 'invalid_value', 'condition'],
    [{ model: GEN, condition: '' }, 400, 'invalid_value', 'condition'],
    [{ model: GEN }, 400, 'condition_required', 'condition'],
    [{ model: GEN, condition, adapters: [{ id: 'lora-comedy', weight: 1 }] }, 400, 'not_available', 'adapters'],
    [{ model: BASE, condition }, 400, 'not_a_generator', 'condition', /base model/],
    [{ model: 'lora-comedy', condition }, 400, 'not_a_generator', 'condition', /is an adapter/],
    [{ model: 'no-such-generator', condition }, 404, 'model_not_found', 'model'],
  ];
  for (const [body, status, code, param, pattern] of cases) await expectError(await completion(body), status, code, param, pattern);
  // JSON cannot carry NaN; 1e999 parses to Infinity, 1e39 overflows float32.
  const raw = (cond: string) => s.app.request('/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"model":"${GEN}","prompt":"x","condition":${cond}}` });
  await expectError(await raw('[1e999]'), 400, 'invalid_value', 'condition');
  const dim = (JSON.parse(readFileSync(`adapters/${GEN}/generator.json`, 'utf8')) as { condition_dim: number }).condition_dim;
  await expectError(await raw(`[1e39${',0'.repeat(dim - 1)}]`), 400, 'invalid_condition', 'condition', /float32/);
  assert.equal(await text({ model: GEN, condition }), reference, 'the generator serves as before');
  const now = s.registry.stats();
  assert.deepEqual([now.resident, now.residentBytes], [stats.resident, stats.residentBytes], 'no factors were added by refused requests');
});
