/**
 * The official `openai` SDK against a real Patchbay socket: logprobs in completions and chat, streamed and
 * not, n > 1, logit_bias, penalties. The SDK parses every response and stream, so shapes it cannot read fail here.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { serve, type ServerType } from '@hono/node-server';
import OpenAI from 'openai';
import { MODEL_ID, metricValue, startTestServer, type TestServer } from './helpers.ts';

let s: TestServer;
let server: ServerType;
let client: OpenAI;
before(async () => {
  s = await startTestServer();
  server = serve({ fetch: s.app.fetch, port: 0, hostname: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await s.close();
});

const prompt = 'ROMEO.\nBut soft,';

test('completions logprobs: one entry per token, top-k sorted, text offsets spell the text', async () => {
  const res = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 8, temperature: 0, logprobs: 3, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  const choice = res.choices[0]!;
  const lp = choice.logprobs!;
  assert.equal(lp.tokens!.length, 8);
  assert.equal(lp.tokens!.join(''), choice.text);
  lp.text_offset!.forEach((off, i) => assert.equal(choice.text.slice(off, off + lp.tokens![i]!.length), lp.tokens![i]));
  lp.top_logprobs!.forEach((top, i) => {
    const values = Object.values(top!);
    assert.ok(values.length >= 1 && values.length <= 3);
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs(values[0]! - lp.token_logprobs![i]!) < 1e-6);
    for (let k = 1; k < values.length; k++) assert.ok(values[k]! <= values[k - 1]!);
  });
});

test('completions stream with echo + logprobs: the prompt chunk first, then a chunk per token', async () => {
  const stream = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 5, temperature: 0, logprobs: 1, echo: true, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming);
  const chunks: OpenAI.Completion[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const first = chunks[0]!.choices[0]!;
  assert.equal(first.text, prompt);
  assert.equal(first.logprobs!.token_logprobs![0], null);
  const rest = chunks.slice(1).flatMap((c) => c.choices).filter((c) => c.logprobs);
  assert.equal(rest.reduce((n, c) => n + c.logprobs!.tokens!.length, 0), 5);
  const nonStream = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 5, temperature: 0, logprobs: 1, echo: true, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  const all = [first, ...rest].flatMap((c) => c.logprobs!.token_logprobs!);
  assert.deepEqual(all, nonStream.choices[0]!.logprobs!.token_logprobs);
  assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), nonStream.choices[0]!.text);
});

test('chat logprobs + top_logprobs, streamed and not, agree', async () => {
  const messages = [{ role: 'user' as const, content: 'Who art thou?' }];
  const res = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 4 });
  const content = res.choices[0]!.logprobs!.content!;
  assert.ok(content.length > 0);
  assert.equal(content.map((t) => t.token).join(''), res.choices[0]!.message.content);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 4);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
    assert.ok(t.top_logprobs[0]!.logprob >= t.logprob - 1e-6);
  }
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 4, stream: true });
  const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
  for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
  assert.deepEqual(streamed, content);
});

test('n = 3: three choices from one prefill row; usage counts the prompt once', async () => {
  const metrics = () => Promise.resolve(s.app.request('/metrics')).then((r) => r.text());
  const rowsBefore = metricValue(await metrics(), 'patchbay_step_batch_rows_sum', { kind: 'prefill' }) ?? 0;
  const res = await client.completions.create({ model: MODEL_ID, prompt, n: 3, max_tokens: 8, temperature: 1, seed: 5, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.deepEqual(res.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(new Set(res.choices.map((c) => c.text)).size, 3, 'seeded members draw different samples');
  assert.deepEqual(res.usage, { prompt_tokens: 6, completion_tokens: 24, total_tokens: 30 });
  const rowsAfter = metricValue(await metrics(), 'patchbay_step_batch_rows_sum', { kind: 'prefill' }) ?? 0;
  assert.equal(rowsAfter - rowsBefore, 1, 'the prompt is prefilled once for all three choices');
  const again = await client.completions.create({ model: MODEL_ID, prompt, n: 3, max_tokens: 8, temperature: 1, seed: 5, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.deepEqual(again.choices.map((c) => c.text), res.choices.map((c) => c.text), 'same seed, same choices');
});

test('n = 2 streamed in chat: both choices arrive with their index and finish', async () => {
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Speak.' }], n: 2, max_tokens: 5, temperature: 0.8, seed: 1, stream: true, stream_options: { include_usage: true } });
  const text = ['', ''];
  const finished = new Set<number>();
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text[c.index] += c.delta.content ?? '';
      if (c.finish_reason) finished.add(c.index);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual([...finished].sort(), [0, 1]);
  assert.ok(text[0]!.length > 0 && text[1]!.length > 0);
  assert.equal(usage!.completion_tokens <= 10, true);
});

test('logit_bias +100 forces a token, -100 bans the greedy one', async () => {
  const forced = 1999; // "ROMEO"
  const res = await client.completions.create({ model: MODEL_ID, prompt: 'To', max_tokens: 6, temperature: 0, logit_bias: { [forced]: 100 }, logprobs: 0 });
  const tokens = res.choices[0]!.logprobs!.tokens!;
  assert.deepEqual(tokens, Array(6).fill('ROMEO'));
  const plain = await client.completions.create({ model: MODEL_ID, prompt: 'To', max_tokens: 1, temperature: 0, logprobs: 1 });
  const greedy = Object.keys(plain.choices[0]!.logprobs!.top_logprobs![0]!)[0]!;
  const banned = (await (await s.app.request('/tokenize', { method: 'POST', body: JSON.stringify({ prompt: greedy }) })).json()) as { tokens: number[] };
  const res2 = await client.completions.create({ model: MODEL_ID, prompt: 'To', max_tokens: 1, temperature: 0, logit_bias: { [banned.tokens[0]!]: -100 } });
  assert.notEqual(res2.choices[0]!.text, greedy);
});

test('frequency_penalty stops greedy repetition that the plain request shows', async () => {
  const body = { model: MODEL_ID, prompt: 'ROMEO.\n', max_tokens: 40, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming;
  const count = async (extra: object) => {
    const res = await client.completions.create({ ...body, ...extra, logprobs: 0 } as OpenAI.CompletionCreateParamsNonStreaming);
    const tokens = res.choices[0]!.logprobs!.tokens!;
    return Math.max(...[...new Set(tokens)].map((t) => tokens.filter((x) => x === t).length));
  };
  const plain = await count({});
  const penalised = await count({ frequency_penalty: 2 });
  assert.ok(penalised < plain, `most repeated token: ${plain} plain, ${penalised} with frequency_penalty 2`);
});
