/**
 * A bounded fuzz run of the public routes: random JSON bodies and field values (fixed seed, FUZZ_CASES
 * requests) against the real runtime, registry and adapters. Nothing may answer 5xx, and the base model's
 * and an adapter's greedy answers must be the same after the run as before it (no state leaked).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { seededRandom } from '../../src/runtime/sampler.ts';
import { request, startAdapterServer, type AdapterServer } from './adapter-server.ts';
import { REPO_ROOT } from './helpers.ts';

export const FUZZ_SEED = 20261129;
export const FUZZ_CASES = 400;

let s: AdapterServer;
before(async () => {
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters') });
});
after(() => s.close());

const rand = seededRandom(FUZZ_SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (p: number) => rand() < p;

const strings = ['', 'x', 'ROMEO.', '\u0000', '\ud800', '💥'.repeat(50), 'a'.repeat(300), 'word '.repeat(2000), '{{ raise_exception("x") }}', '<|endoftext|>'];
const numbers = [0, 1, -1, 2.5, 1e9, -1e300, Number.MAX_SAFE_INTEGER, 3, 16];
function scalar(): unknown {
  return pick([() => pick(strings), () => pick(numbers), () => null, () => true, () => false, () => [], () => ({})])();
}
function value(depth = 0): unknown {
  if (depth > 2 || chance(0.6)) return scalar();
  if (chance(0.5)) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
  return Object.fromEntries(Array.from({ length: Math.floor(rand() * 3) }, () => [pick(['id', 'weight', 'role', 'content', 'type', 'text', 'x']), value(depth + 1)]));
}
const models = ['tiny-gpt2', 'lora-comedy', 'lora-tragedy', 's2ft-histories', 'nope', '../adapters', 'lora-comedy/..', ''];
const fields: Record<string, () => unknown> = {
  model: () => (chance(0.85) ? pick(models) : value()),
  prompt: () => pick([() => pick(strings), () => [1, 2, 3], () => [[5, 6]], () => [pick(strings), 'b'], () => [-1], () => [99999], value])(),
  messages: () => (chance(0.7) ? [{ role: pick(['user', 'system', 'assistant', 'tool', 'nobody']), content: chance(0.8) ? pick(strings) : value() }] : value()),
  max_tokens: () => (chance(0.7) ? pick([1, 2, 4, 0, -3, 1e9, 2.5]) : value()),
  temperature: () => (chance(0.7) ? pick([0, 0.7, 2, 3, -1]) : value()),
  top_p: () => pick([0, 0.5, 1, 2, null]),
  top_k: () => pick([0, 5, -1, 1.5]),
  seed: () => pick([1, -1, 2 ** 60, 'x']),
  stop: () => pick([['\n'], 'a'.repeat(300), ['a', 'b', 'c', 'd', 'e'], [''], value()]),
  n: () => pick([1, 2, 0, 100]),
  stream: () => pick([true, false, 'yes']),
  adapters: () => (chance(0.6) ? [{ id: pick(models), weight: pick([1, -0.5, 1e308, 0]) }] : value()),
  patches: () => value(),
  condition: () => value(),
  logprobs: () => pick([true, 2, -1, null]),
  echo: () => pick([true, false]),
  ignore_eos: () => pick([true, false]),
  stream_options: () => value(),
};
function body(): unknown {
  if (chance(0.05)) return value();
  const out: Record<string, unknown> = {};
  for (const [k, gen] of Object.entries(fields)) if (chance(k === 'model' || k === 'prompt' || k === 'messages' ? 0.9 : 0.25)) out[k] = gen();
  // Keep generations short so the run stays bounded: long max_tokens only where the server must refuse them.
  if (typeof out.max_tokens !== 'number' || (out.max_tokens > 4 && out.max_tokens < 1e9)) out.max_tokens = 2;
  return out;
}

const probe = async () => {
  const answers: string[] = [];
  for (const model of ['tiny-gpt2', 'lora-comedy']) {
    const res = await request(s.app, 'POST', '/v1/completions', { model, prompt: 'ROMEO.\nBut soft,', max_tokens: 12, temperature: 0 });
    assert.equal(res.status, 200);
    answers.push(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text);
  }
  return answers;
};

test(`fuzz: ${FUZZ_CASES} random requests (seed ${FUZZ_SEED}) answer no 5xx and change nothing`, { timeout: 600_000 }, async () => {
  const before = await probe();
  const statuses = new Map<number, number>();
  for (let i = 0; i < FUZZ_CASES; i++) {
    const route = pick(['/v1/completions', '/v1/completions', '/v1/chat/completions', '/v1/chat/completions', '/tokenize', '/detokenize', 'GET /v1/models/']);
    const res = route.startsWith('GET')
      ? await request(s.app, 'GET', `/v1/models/${encodeURIComponent(String(pick(models)))}`)
      : await s.app.request(route, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chance(0.03) ? '{"model": ' : JSON.stringify(body()) });
    const text = await res.text();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    assert.ok(res.status < 500, `case ${i} ${route}: ${res.status} ${text.slice(0, 300)}`);
    if (res.headers.get('content-type')?.includes('text/event-stream')) assert.ok(!text.includes('"server_error"'), `case ${i}: in-band error ${text.slice(0, 300)}`);
  }
  console.log(`fuzz statuses: ${JSON.stringify([...statuses].sort())}`);
  assert.deepEqual(await probe(), before, 'base and adapter answers unchanged');
  assert.ok((statuses.get(200) ?? 0) > FUZZ_CASES / 20, `some requests were valid: ${JSON.stringify([...statuses])}`);
});
