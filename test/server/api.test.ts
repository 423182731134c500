/** The public routes against the real runtime and the repo's tiny model, through `app.request`. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MODEL_ID, buildApp, metricValue, parseSSE, post, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(() => s.close());

const PROMPT = 'Once upon a time there was a little';
const greedy = { model: MODEL_ID, temperature: 0, max_tokens: 24 };

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

test('completions: OpenAI body, usage and Patchbay headers', async () => {
  const res = await post(s.app, '/v1/completions', { ...greedy, prompt: PROMPT });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('x-request-id') ?? '', /.+/);
  assert.match(res.headers.get('x-patchbay-base-version') ?? '', /^\d+$/);
  assert.equal(res.headers.get('x-patchbay-edit-seq'), '0');
  const body = (await res.json()) as {
    id: string;
    object: string;
    created: number;
    model: string;
    choices: { index: number; text: string; finish_reason: string }[];
    usage: Usage;
  };
  assert.match(body.id, /^cmpl-/);
  assert.equal(body.object, 'text_completion');
  assert.equal(body.model, MODEL_ID);
  assert.ok(Number.isInteger(body.created));
  assert.equal(body.choices.length, 1);
  assert.ok(body.choices[0]!.text.length > 0, 'text is non-empty');
  assert.ok(['stop', 'length'].includes(body.choices[0]!.finish_reason));
  assert.equal(body.usage.prompt_tokens, s.runtime.tokenizer.encode(PROMPT).length);
  assert.ok(body.usage.completion_tokens > 0 && body.usage.completion_tokens <= 24);
  assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
});

test('completions: a token-id prompt and a one-string array equal the string prompt', async () => {
  const ids = s.runtime.tokenizer.encode(PROMPT);
  const texts = await Promise.all(
    [PROMPT, [PROMPT], ids, [ids]].map(async (prompt) => {
      const res = await post(s.app, '/v1/completions', { ...greedy, prompt });
      assert.equal(res.status, 200);
      return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
    }),
  );
  assert.deepEqual(new Set(texts).size, 1, `all prompt shapes agree: ${JSON.stringify(texts)}`);
});

test('completions: the caller x-request-id is echoed', async () => {
  const res = await post(s.app, '/v1/completions', { ...greedy, prompt: PROMPT, max_tokens: 2 }, {
    headers: { 'content-type': 'application/json', 'x-request-id': 'trace-abc-123' },
  });
  assert.equal(res.headers.get('x-request-id'), 'trace-abc-123');
});

test('chat: assistant message and usage', async () => {
  const res = await post(s.app, '/v1/chat/completions', { ...greedy, messages: [{ role: 'user', content: 'Hello there' }] });
  assert.equal(res.status, 200);
  const body = (await res.json()) as {
    id: string;
    object: string;
    choices: { message: { role: string; content: string }; finish_reason: string }[];
    usage: Usage;
  };
  assert.match(body.id, /^chatcmpl-/);
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.choices[0]!.message.role, 'assistant');
  assert.equal(typeof body.choices[0]!.message.content, 'string');
  assert.ok(body.usage.prompt_tokens > 0);
  assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
});

test('chat: without max_tokens the reply is limited to what is left of the context', async () => {
  const context = s.runtime.model.contextLength;
  const filler = 'word '.repeat(400);
  // Trim the user text until the rendered prompt leaves a few tokens of room.
  let content = filler;
  const render = (c: string) => s.runtime.tokenizer.encode(s.runtime.tokenizer.applyChatTemplate([{ role: 'user', content: c }])).length;
  while (render(content) > context - 4) content = content.slice(0, -5);
  const res = await post(s.app, '/v1/chat/completions', { model: MODEL_ID, temperature: 0, messages: [{ role: 'user', content }] });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { usage: Usage };
  assert.ok(body.usage.total_tokens <= context);
});

test('completions stream: SSE framing, [DONE], deltas equal the non-stream text, usage chunk', async () => {
  const plain = (await (await post(s.app, '/v1/completions', { ...greedy, prompt: PROMPT })).json()) as {
    choices: { text: string; finish_reason: string }[];
    usage: Usage;
  };
  const res = await post(s.app, '/v1/completions', {
    ...greedy,
    prompt: PROMPT,
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.match(res.headers.get('x-patchbay-base-version') ?? '', /^\d+$/);
  const { chunks, done } = parseSSE(await res.text());
  assert.ok(done, 'ends with data: [DONE]');
  const usageChunk = chunks.at(-1) as { choices: unknown[]; usage: Usage };
  assert.deepEqual(usageChunk.choices, []);
  assert.deepEqual(usageChunk.usage, plain.usage);
  const choiceChunks = chunks.slice(0, -1) as { object: string; usage: null; choices: { text: string; finish_reason: string | null }[] }[];
  for (const c of choiceChunks) {
    assert.equal(c.object, 'text_completion');
    assert.equal(c.usage, null);
  }
  assert.equal(choiceChunks.map((c) => c.choices[0]!.text).join(''), plain.choices[0]!.text);
  assert.equal(choiceChunks.at(-1)!.choices[0]!.finish_reason, plain.choices[0]!.finish_reason);
  assert.ok(choiceChunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null));
});

test('chat stream: role first, content deltas equal the non-stream message, finish chunk', async () => {
  const req = { ...greedy, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a story' }] };
  const plain = (await (await post(s.app, '/v1/chat/completions', req)).json()) as {
    choices: { message: { content: string }; finish_reason: string }[];
  };
  const res = await post(s.app, '/v1/chat/completions', { ...req, stream: true });
  const { chunks, done } = parseSSE(await res.text());
  assert.ok(done);
  const typed = chunks as { object: string; usage?: unknown; choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[] }[];
  assert.ok(typed.every((c) => c.object === 'chat.completion.chunk' && !('usage' in c)));
  assert.equal(typed[0]!.choices[0]!.delta.role, 'assistant');
  assert.equal(typed.map((c) => c.choices[0]!.delta.content ?? '').join(''), plain.choices[0]!.message.content);
  assert.equal(typed.at(-1)!.choices[0]!.finish_reason, plain.choices[0]!.finish_reason);
});

test('a client that aborts mid-stream cancels its sequence', async () => {
  const before = await (await s.app.request('/metrics')).text();
  const cancelledBefore = metricValue(before, 'patchbay_sequences_cancelled_total', { model: MODEL_ID }) ?? 0;
  const abort = new AbortController();
  const res = await post(s.app, '/v1/completions', { model: MODEL_ID, prompt: PROMPT, max_tokens: 200, temperature: 1, seed: 7, stream: true }, { signal: abort.signal });
  const reader = res.body!.getReader();
  await reader.read();
  abort.abort();
  await reader.cancel();
  let cancelled = cancelledBefore;
  for (let i = 0; i < 200 && cancelled === cancelledBefore; i++) {
    await new Promise((r) => setTimeout(r, 10));
    cancelled = metricValue(await (await s.app.request('/metrics')).text(), 'patchbay_sequences_cancelled_total', { model: MODEL_ID }) ?? 0;
  }
  assert.equal(cancelled, cancelledBefore + 1);
  assert.equal(s.runtime.scheduler.activeCount, 0);
});

test('/v1/models lists the base model; /v1/models/:id finds it or 404s', async () => {
  const list = (await (await s.app.request('/v1/models')).json()) as { object: string; data: Record<string, unknown>[] };
  assert.equal(list.object, 'list');
  assert.equal(list.data.length, 1);
  assert.deepEqual(list.data[0], {
    id: MODEL_ID,
    object: 'model',
    created: 1,
    owned_by: 'patchbay',
    root: MODEL_ID,
    parent: null,
    max_model_len: s.runtime.model.contextLength,
  });
  const one = await s.app.request(`/v1/models/${MODEL_ID}`);
  assert.equal(one.status, 200);
  assert.equal(((await one.json()) as { id: string }).id, MODEL_ID);
  const missing = await s.app.request('/v1/models/org/nope');
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'model_not_found');
});

test('/healthz and /readyz when ready', async () => {
  assert.equal((await s.app.request('/healthz')).status, 200);
  const ready = await s.app.request('/readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready', model: MODEL_ID });
});

test('/metrics has request, token, latency, TTFT, queue, active-sequence and step metrics', async () => {
  await post(s.app, '/v1/completions', { ...greedy, prompt: PROMPT, max_tokens: 4 });
  const res = await s.app.request('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  const ok = { route: '/v1/completions', method: 'POST', status: '200' };
  assert.ok((metricValue(text, 'patchbay_http_requests_total', ok) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_http_request_duration_seconds_count', { route: '/v1/completions' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_time_to_first_token_seconds_count', { route: '/v1/completions', stream: 'false' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_prompt_tokens_total', { model: MODEL_ID }) ?? 0) > 0);
  assert.ok((metricValue(text, 'patchbay_completion_tokens_total', { model: MODEL_ID }) ?? 0) > 0);
  assert.equal(metricValue(text, 'patchbay_queue_depth'), 0);
  assert.equal(metricValue(text, 'patchbay_active_sequences'), 0);
  // A base-only request runs on the plain graph: one prefill, then decode steps (max_tokens 4 → 3 decodes).
  assert.ok((metricValue(text, 'patchbay_step_duration_seconds_count', { kind: 'prefill', graph: 'plain' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_step_duration_seconds_count', { kind: 'decode', graph: 'plain' }) ?? 0) >= 3);
  assert.ok((metricValue(text, 'patchbay_step_batch_rows_count', { kind: 'decode' }) ?? 0) >= 3);
});

test('lifecycle states: loading and draining answer 503 with OpenAI bodies', async () => {
  const { app, state } = buildApp();
  assert.equal((await app.request('/healthz')).status, 200);
  assert.equal((await app.request('/readyz')).status, 503);
  const loading = await post(app, '/v1/completions', { model: MODEL_ID, prompt: 'x' });
  assert.equal(loading.status, 503);
  assert.equal(((await loading.json()) as { error: { code: string } }).error.code, 'model_loading');
  assert.equal((await app.request('/v1/models')).status, 503);

  state.markReady(s.state.serving!);
  assert.equal((await app.request('/readyz')).status, 200);
  state.startDraining();
  const readyz = await app.request('/readyz');
  assert.equal(readyz.status, 503);
  assert.deepEqual(await readyz.json(), { status: 'draining', model: MODEL_ID });
  const draining = await post(app, '/v1/chat/completions', { model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(draining.status, 503);
  assert.equal(((await draining.json()) as { error: { code: string } }).error.code, 'server_draining');
  assert.equal((await app.request('/v1/models')).status, 200, 'read-only routes keep answering while draining');
});
