/**
 * Bounded client influence over HTTP: prompts that cannot fit are refused from their length before any
 * rendering or tokenizing; the body limit follows the context; long stop strings are refused; a raising
 * chat template is a 400; every 429 carries Retry-After; the resolution is released on every path.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { defaultBodyBytes } from '../../src/server/body-limit.ts';
import type { ServedTokenizer } from '../../src/server/contract.ts';
import { createBaseResolver, type ModelResolver } from '../../src/server/resolver.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';
import { MODEL_DIR, MODEL_ID, buildApp, post } from './helpers.ts';

let rt: Runtime;
const scratch = mkdtempSync(path.join(tmpdir(), 'patchbay-bounded-'));
before(async () => {
  rt = await loadRuntime({ modelDir: MODEL_DIR, device: 'cpu', maxBatch: 4, maxQueue: 0, threads: 1 });
});
after(async () => {
  await rt.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** The real tokenizer, counting what the server asks of it. */
function counting(inner: ServedTokenizer) {
  const calls = { encode: 0, render: 0 };
  const tokenizer: ServedTokenizer = {
    promptBound: inner.promptBound,
    decode: (ids) => inner.decode(ids),
    tokenBytes: (id) => inner.tokenBytes(id),
    encode: (t) => (calls.encode++, inner.encode(t)),
    encodePrompt: (t) => (calls.encode++, inner.encodePrompt(t)),
    applyChatTemplate: (m) => (calls.render++, inner.applyChatTemplate(m)),
  };
  return { tokenizer, calls };
}

function serve(opts: { tokenizer?: ServedTokenizer; resolver?: ModelResolver; maxBodyBytes?: number } = {}) {
  const { app, state } = buildApp(opts.maxBodyBytes === undefined ? {} : { maxBodyBytes: opts.maxBodyBytes });
  const resolver = opts.resolver ?? createBaseResolver({ id: MODEL_ID, contextLength: rt.model.contextLength, created: 1 });
  state.markReady({ runtime: { ...rt, tokenizer: opts.tokenizer ?? rt.tokenizer }, resolver });
  return app;
}

test('the embedded tokenizer has a characters-per-token bound: its longest token, 14 bytes', () => {
  assert.equal(rt.tokenizer.promptBound.maxCharsPerToken, 14);
  // The bound is real: no text of n characters encodes to fewer than ⌈n / 14⌉ tokens, even the kindest.
  const text = 'NORTHUMBERLAND'.repeat(50);
  assert.ok(rt.tokenizer.encode(text).length >= Math.ceil(text.length / 14));
});

test('a prompt too long for the context is refused before rendering or tokenizing', async () => {
  const { tokenizer, calls } = counting(rt.tokenizer);
  const app = serve({ tokenizer });
  const huge = 'word '.repeat(20_000);
  const a = await post(app, '/v1/completions', { model: MODEL_ID, prompt: huge, max_tokens: 4 });
  assert.equal(a.status, 400);
  const body = (await a.json()) as { error: { code: string; param: string } };
  assert.deepEqual([body.error.code, body.error.param], ['context_length_exceeded', 'prompt']);
  const b = await post(app, '/v1/chat/completions', { model: MODEL_ID, messages: [{ role: 'user', content: huge }] });
  assert.equal(b.status, 400);
  assert.deepEqual(calls, { encode: 0, render: 0 }, 'nothing was rendered or encoded');
  // Just inside the bound, the exact count decides (and names the field) after tokenizing.
  const edge = 'x'.repeat(14 * 255);
  const c = await post(app, '/v1/completions', { model: MODEL_ID, prompt: edge, max_tokens: 1 });
  assert.equal(c.status, 400);
  assert.equal(calls.encode, 1);
});

test('the default body limit follows the context: 64 KiB + context × 14 × 6 bytes; larger bodies are 413', async () => {
  const limit = defaultBodyBytes(rt.model.contextLength, rt.tokenizer.promptBound);
  assert.equal(limit, 64 * 1024 + 256 * 14 * 6);
  const app = serve({ maxBodyBytes: limit });
  const res = await post(app, '/v1/completions', { model: MODEL_ID, prompt: 'word '.repeat(200_000), max_tokens: 4 });
  assert.equal(res.status, 413);
});

test('a stop string over 256 characters is a 400 naming stop', async () => {
  const app = serve();
  const res = await post(app, '/v1/completions', { model: MODEL_ID, prompt: 'x', stop: ['a'.repeat(5000)] });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as { error: { param: string } }).error.param, 'stop[0]');
});

test("a chat template that raises answers 400 with the template's message", async () => {
  for (const f of ['tokenizer.json']) symlinkSync(path.join(MODEL_DIR, f), path.join(scratch, f));
  const config = JSON.parse(readFileSync(path.join(MODEL_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  config.chat_template = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('Conversations must start with a system message') }}{% endif %}{{ messages[0]['content'] }}";
  writeFileSync(path.join(scratch, 'tokenizer_config.json'), JSON.stringify(config));
  const app = serve({ tokenizer: await HfTokenizer.load(scratch) });
  const res = await post(app, '/v1/chat/completions', { model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { message: string; param: string; code: string } };
  assert.equal(body.error.code, 'chat_template_error');
  assert.equal(body.error.param, 'messages');
  assert.match(body.error.message, /Conversations must start with a system message/);
});

test('a full queue answers 429 with Retry-After', async () => {
  const app = serve();
  const long = { model: MODEL_ID, prompt: 'ROMEO.', max_tokens: 60, ignore_eos: true, temperature: 0 };
  // maxBatch 4, maxQueue 0: four run, the rest are refused.
  const responses = await Promise.all(Array.from({ length: 7 }, () => post(app, '/v1/completions', long)));
  const refused = responses.filter((r) => r.status === 429);
  assert.ok(refused.length > 0, `statuses ${responses.map((r) => r.status).join(',')}`);
  for (const r of refused) assert.match(r.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
});

test('the resolution is released when a generation fails, streaming or not', async () => {
  const layer = rt.deltaLayers[0]!;
  const bad: DeltaBinding = { key: 'bad', layers: new Map([[layer.name, { rank: 1, a: new Float32Array(1), b: new Float32Array(1) }]]) };
  let released = 0;
  const base = createBaseResolver({ id: MODEL_ID, contextLength: rt.model.contextLength, created: 1 });
  const resolver: ModelResolver = {
    list: () => base.list(),
    get: (id) => base.get(id),
    resolve: async () => ({ modelId: MODEL_ID, kind: 'test', delta: bad, editSeq: 0, release: () => void released++ }),
  };
  const app = serve({ resolver });
  for (const stream of [false, true]) {
    const res = await post(app, '/v1/completions', { model: MODEL_ID, prompt: 'x', max_tokens: 2, stream });
    assert.equal(res.status, 500);
    await res.text();
  }
  await new Promise((r) => setImmediate(r));
  assert.equal(released, 2);
});
