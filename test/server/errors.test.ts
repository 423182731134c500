/** Every rejection is an OpenAI error body with the right status, and 400s name the offending field. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MODEL_ID, post, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(() => s.close());

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function expectError(res: Response, status: number, param: string | null, code?: string): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, JSON.stringify(body));
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(body.error.param, param, body.error.message);
  if (code) assert.equal(body.error.code, code);
  return body;
}

const completion = { model: MODEL_ID, prompt: 'Hello', max_tokens: 4 };
const chat = { model: MODEL_ID, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 };
const omit = (o: Record<string, unknown>, key: string) => Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));

const cases: { name: string; route: string; body: unknown; param: string | null; code?: string }[] = [
  { name: 'temperature 5', route: '/v1/completions', body: { ...completion, temperature: 5 }, param: 'temperature' },
  { name: 'n 17 (over the schema maximum)', route: '/v1/completions', body: { ...completion, n: 17 }, param: 'n' },
  { name: 'n 9 (over the batch size)', route: '/v1/completions', body: { ...completion, n: 9 }, param: 'n' },
  { name: 'n 0', route: '/v1/chat/completions', body: { ...chat, n: 0 }, param: 'n' },
  { name: 'max_tokens -1', route: '/v1/completions', body: { ...completion, max_tokens: -1 }, param: 'max_tokens' },
  { name: 'max_tokens 1.5', route: '/v1/completions', body: { ...completion, max_tokens: 1.5 }, param: 'max_tokens' },
  { name: 'missing model', route: '/v1/completions', body: omit(completion, 'model'), param: 'model', code: 'missing_required_parameter' },
  { name: 'model not a string', route: '/v1/completions', body: { ...completion, model: 3 }, param: 'model', code: 'invalid_type' },
  { name: 'missing prompt', route: '/v1/completions', body: omit(completion, 'prompt'), param: 'prompt' },
  { name: 'prompt wrong type', route: '/v1/completions', body: { ...completion, prompt: 42 }, param: 'prompt' },
  { name: '65 prompts', route: '/v1/completions', body: { ...completion, prompt: Array(65).fill('a') }, param: 'prompt' },
  { name: 'empty prompt', route: '/v1/completions', body: { ...completion, prompt: '' }, param: 'prompt' },
  { name: 'token id past the vocabulary', route: '/v1/completions', body: { ...completion, prompt: [1, 999999] }, param: 'prompt' },
  { name: 'stop with 5 items', route: '/v1/completions', body: { ...completion, stop: ['a', 'b', 'c', 'd', 'e'] }, param: 'stop' },
  { name: 'top_p 0', route: '/v1/completions', body: { ...completion, top_p: 0 }, param: 'top_p' },
  { name: 'top_k -1', route: '/v1/completions', body: { ...completion, top_k: -1 }, param: 'top_k' },
  { name: 'ignore_eos not a boolean', route: '/v1/completions', body: { ...completion, ignore_eos: 'yes' }, param: 'ignore_eos' },
  { name: 'seed 1.5', route: '/v1/completions', body: { ...completion, seed: 1.5 }, param: 'seed' },
  { name: 'stream not boolean', route: '/v1/completions', body: { ...completion, stream: 'yes' }, param: 'stream' },
  { name: 'stream_options without stream', route: '/v1/completions', body: { ...completion, stream_options: { include_usage: true } }, param: 'stream_options' },
  { name: 'echo not a boolean', route: '/v1/completions', body: { ...completion, echo: 1 }, param: 'echo' },
  { name: 'logprobs 6', route: '/v1/completions', body: { ...completion, logprobs: 6 }, param: 'logprobs' },
  { name: 'chat logprobs a number', route: '/v1/chat/completions', body: { ...chat, logprobs: 2 }, param: 'logprobs' },
  { name: 'top_logprobs 21', route: '/v1/chat/completions', body: { ...chat, logprobs: true, top_logprobs: 21 }, param: 'top_logprobs' },
  { name: 'top_logprobs without logprobs', route: '/v1/chat/completions', body: { ...chat, top_logprobs: 2 }, param: 'top_logprobs' },
  { name: 'presence_penalty 3', route: '/v1/completions', body: { ...completion, presence_penalty: 3 }, param: 'presence_penalty' },
  { name: 'frequency_penalty -2.5', route: '/v1/chat/completions', body: { ...chat, frequency_penalty: -2.5 }, param: 'frequency_penalty' },
  { name: 'repetition_penalty 0', route: '/v1/completions', body: { ...completion, repetition_penalty: 0 }, param: 'repetition_penalty' },
  { name: 'logit_bias value 200', route: '/v1/completions', body: { ...completion, logit_bias: { '5': 200 } }, param: 'logit_bias.5' },
  { name: 'logit_bias key not a token id', route: '/v1/completions', body: { ...completion, logit_bias: { x: 1 } }, param: 'logit_bias.x' },
  { name: 'logit_bias token past the vocabulary', route: '/v1/completions', body: { ...completion, logit_bias: { '999999': 1 } }, param: 'logit_bias' },
  { name: 'stop_token_ids past the vocabulary', route: '/v1/chat/completions', body: { ...chat, stop_token_ids: [999999] }, param: 'stop_token_ids' },
  { name: 'min_tokens over max_tokens', route: '/v1/completions', body: { ...completion, min_tokens: 5 }, param: 'min_tokens' },
  { name: 'best_of 2 (unsupported)', route: '/v1/completions', body: { ...completion, best_of: 2 }, param: 'best_of' },
  { name: 'suffix (unsupported)', route: '/v1/completions', body: { ...completion, suffix: 'x' }, param: 'suffix' },
  { name: 'tools (unsupported)', route: '/v1/chat/completions', body: { ...chat, tools: [{ type: 'function', function: { name: 'f' } }] }, param: 'tools' },
  { name: 'response_format json (unsupported)', route: '/v1/chat/completions', body: { ...chat, response_format: { type: 'json_object' } }, param: 'response_format' },
  { name: 'tokenize without prompt or messages', route: '/tokenize', body: { model: MODEL_ID }, param: null },
  { name: 'detokenize token past the vocabulary', route: '/detokenize', body: { tokens: [1, 999999] }, param: 'tokens' },
  { name: 'malformed JSON', route: '/v1/completions', body: '{"model": "tiny-gpt2", ', param: null, code: 'invalid_json' },
  { name: 'JSON array body', route: '/v1/completions', body: '[1, 2]', param: null, code: 'invalid_json' },
  { name: 'no messages', route: '/v1/chat/completions', body: { ...chat, messages: [] }, param: 'messages' },
  { name: 'bad role', route: '/v1/chat/completions', body: { ...chat, messages: [{ role: 'wizard', content: 'x' }] }, param: 'messages[0].role' },
  { name: 'content wrong type', route: '/v1/chat/completions', body: { ...chat, messages: [{ role: 'user', content: 5 }] }, param: 'messages[0].content' },
  { name: 'max_completion_tokens 0', route: '/v1/chat/completions', body: { ...chat, max_completion_tokens: 0 }, param: 'max_completion_tokens' },
  { name: 'adapter weight not a number', route: '/v1/completions', body: { ...completion, adapters: [{ id: 'a', weight: 'x' }] }, param: 'adapters[0].weight' },
  { name: 'adapters not available yet', route: '/v1/completions', body: { ...completion, adapters: [{ id: 'a', weight: 1 }] }, param: 'adapters', code: 'not_available' },
  { name: 'patches not available yet', route: '/v1/chat/completions', body: { ...chat, patches: [{ id: 'p', alpha: 0.5 }] }, param: 'patches', code: 'not_available' },
  { name: 'condition not available yet', route: '/v1/completions', body: { ...completion, condition: [0.1, 0.2] }, param: 'condition', code: 'not_available' },
];

for (const c of cases) {
  test(`400: ${c.name}`, async () => {
    const body = await expectError(await post(s.app, c.route, c.body), 400, c.param, c.code);
    assert.equal(body.error.type, 'invalid_request_error');
    if (c.param) assert.ok(body.error.message.includes(c.param.split(/[.[]/)[0]!), `message names ${c.param}: ${body.error.message}`);
  });
}

test('404: unknown model names `model`', async () => {
  await expectError(await post(s.app, '/v1/completions', { ...completion, model: 'gpt-4' }), 404, 'model', 'model_not_found');
  await expectError(await post(s.app, '/v1/chat/completions', { ...chat, model: 'nope' }), 404, 'model', 'model_not_found');
});

test('404: unknown route', async () => {
  await expectError(await s.app.request('/v1/nothing'), 404, null, 'unknown_route');
});

test('413: body over the limit', async () => {
  const big = { ...completion, prompt: 'x'.repeat(1024 * 1024 + 10) };
  await expectError(await post(s.app, '/v1/completions', big), 413, null, 'request_too_large');
  // With a declared Content-Length the limit applies before reading the body.
  const declared = JSON.stringify(big);
  const res = await post(s.app, '/v1/completions', declared, {
    headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(declared)) },
  });
  await expectError(res, 413, null, 'request_too_large');
});

test('400: prompt + max_tokens over the context names max_tokens', async () => {
  const context = s.runtime.model.contextLength;
  const body = await expectError(
    await post(s.app, '/v1/completions', { ...completion, max_tokens: context }),
    400,
    'max_tokens',
    'context_length_exceeded',
  );
  assert.match(body.error.message, /max_tokens/);
  assert.match(body.error.message, new RegExp(`${context}`));
  const chatBody = await expectError(
    await post(s.app, '/v1/chat/completions', { ...chat, max_tokens: undefined, max_completion_tokens: context }),
    400,
    'max_completion_tokens',
    'context_length_exceeded',
  );
  assert.match(chatBody.error.message, /max_tokens/);
});

test('400: a prompt alone over the context names the prompt', async () => {
  const long = 'word '.repeat(s.runtime.model.contextLength * 2);
  await expectError(await post(s.app, '/v1/completions', { ...completion, prompt: long }), 400, 'prompt', 'context_length_exceeded');
  await expectError(
    await post(s.app, '/v1/chat/completions', { ...chat, messages: [{ role: 'user', content: long }] }),
    400,
    'messages',
    'context_length_exceeded',
  );
});

test('null optional fields are treated as unset (OpenAI SDKs send them)', async () => {
  const res = await post(s.app, '/v1/completions', { ...completion, temperature: null, top_p: null, stop: null, n: null, seed: null, user: null });
  assert.equal(res.status, 200);
});
