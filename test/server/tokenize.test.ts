/** vLLM's /tokenize and /detokenize: the same token ids the generation routes use, in vLLM's shapes. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MODEL_ID, post, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
before(async () => {
  s = await startTestServer();
});
after(() => s.close());

test('tokenize → detokenize round-trips, and count is what completions bills', async () => {
  const prompt = 'To be, or not to be: that is the question.';
  const tok = (await (await post(s.app, '/tokenize', { model: MODEL_ID, prompt })).json()) as { tokens: number[]; count: number; max_model_len: number };
  assert.equal(tok.count, tok.tokens.length);
  assert.equal(tok.max_model_len, s.runtime.model.contextLength);
  assert.deepEqual(tok.tokens, s.runtime.tokenizer.encode(prompt));
  const detok = (await (await post(s.app, '/detokenize', { model: MODEL_ID, tokens: tok.tokens })).json()) as { prompt: string };
  assert.equal(detok.prompt, prompt);
  const gen = (await (await post(s.app, '/v1/completions', { model: MODEL_ID, prompt, max_tokens: 1 })).json()) as { usage: { prompt_tokens: number } };
  assert.equal(gen.usage.prompt_tokens, tok.count);
});

test('tokenize messages uses the chat template, as chat completions bills', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Who art thou?' }];
  const tok = (await (await post(s.app, '/tokenize', { messages })).json()) as { tokens: number[]; count: number };
  assert.deepEqual(tok.tokens, s.runtime.tokenizer.encode(s.runtime.tokenizer.applyChatTemplate(messages)));
  const chat = (await (await post(s.app, '/v1/chat/completions', { model: MODEL_ID, messages, max_tokens: 1 })).json()) as { usage: { prompt_tokens: number } };
  assert.equal(chat.usage.prompt_tokens, tok.count);
});

test('an unknown model is a 404 naming model', async () => {
  const res = await post(s.app, '/tokenize', { model: 'nope', prompt: 'x' });
  assert.equal(res.status, 404);
  assert.equal(((await res.json()) as { error: { param: string } }).error.param, 'model');
});
