/**
 * Echo + logprobs (lm-evaluation-harness's scoring request) against PyTorch: every prompt token's logprob
 * equals log_softmax of the reference logits at the previous position, within 1e-4, for the base and for
 * each adapter fixture (LoRA, F16 LoRA, S²FT, a two-adapter combination), all requests batched together so
 * each row carries its own factors. References: test/fixtures (tools/make_fixtures.py, tools/adapters/).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startAdapterServer, type AdapterServer } from './adapter-server.ts';
import { post, REPO_ROOT } from './helpers.ts';

interface Fixture {
  tolerance: number;
  adapters?: { id: string; weight: number }[];
  prompts: { input_ids: number[] }[];
  all_position_logits: { prompt_index: number; logits: number[][] };
}

interface Logprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

const load = async (rel: string) => JSON.parse(await readFile(path.join(REPO_ROOT, rel), 'utf8')) as Fixture;

/** log_softmax in float64. */
function logSoftmax(row: readonly number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}

let s: AdapterServer;
before(async () => {
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters') });
});
after(() => s.close());

const CASES: [string, string][] = [
  ['base', 'test/fixtures/tiny-gpt2/reference.json'],
  ['lora-comedy', 'test/fixtures/adapters/lora-comedy.json'],
  ['lora-tragedy', 'test/fixtures/adapters/lora-tragedy.json'],
  ['s2ft-histories', 'test/fixtures/adapters/s2ft-histories.json'],
  ['mix-comedy-tragedy', 'test/fixtures/adapters/mix-comedy-tragedy.json'],
];

test('echo logprobs equal log_softmax of the PyTorch logits (base and adapters, one batch)', async () => {
  const fixtures = await Promise.all(CASES.map(([, file]) => load(file)));
  const bodies = fixtures.map((f) => {
    const [first, ...rest] = f.adapters ?? [];
    return {
      model: first && rest.length === 0 && first.weight === 1 ? first.id : 'tiny-gpt2',
      ...(first && (rest.length > 0 || first.weight !== 1) ? { adapters: f.adapters } : {}),
      prompt: f.prompts[f.all_position_logits.prompt_index]!.input_ids,
      echo: true,
      logprobs: 5,
      max_tokens: 0,
    };
  });
  // Sent together so the scheduler prefills them in one batch, each row with its own adapter.
  const responses = await Promise.all(bodies.map((b) => post(s.app, '/v1/completions', b)));
  for (const [i, res] of responses.entries()) {
    const [name] = CASES[i]!;
    const fixture = fixtures[i]!;
    assert.equal(res.status, 200, `${name}: ${await res.clone().text()}`);
    const body = (await res.json()) as { choices: { text: string; logprobs: Logprobs; finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
    const choice = body.choices[0]!;
    const ids = bodies[i]!.prompt;
    const lp = choice.logprobs;
    assert.equal(lp.tokens.length, ids.length);
    assert.equal(lp.tokens.join(''), choice.text, `${name}: tokens spell the echoed text`);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    assert.equal(choice.finish_reason, 'length');
    assert.deepEqual(body.usage, { prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
    let worst = 0;
    for (let t = 1; t < ids.length; t++) {
      const ref = logSoftmax(fixture.all_position_logits.logits[t - 1]!);
      worst = Math.max(worst, Math.abs(lp.token_logprobs[t]! - ref[ids[t]!]!));
      // The 5 alternatives are the 5 largest reference logprobs, in order.
      const top = Object.values(lp.top_logprobs[t]!);
      const refTop = [...ref].sort((a, b) => b - a).slice(0, 5);
      top.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - refTop[k]!))));
    }
    assert.ok(worst <= fixture.tolerance, `${name}: prompt logprobs differ from PyTorch by ${worst}`);
  }
});

test('echo + max_tokens 1 (lm-eval): prompt entries, then exactly one generated entry', async () => {
  const res = await post(s.app, '/v1/completions', { model: 'tiny-gpt2', prompt: [1999, 14, 199, 454], echo: true, logprobs: 1, max_tokens: 1, temperature: 0 });
  const body = (await res.json()) as { choices: { text: string; logprobs: Logprobs }[] };
  const lp = body.choices[0]!.logprobs;
  assert.equal(lp.token_logprobs.length, 5);
  // Greedy: the generated token is the most likely one, so its logprob is the top alternative's.
  assert.equal(lp.token_logprobs[4], Math.max(...Object.values(lp.top_logprobs[4]!)));
  assert.deepEqual(lp.text_offset.slice(0, 4), [0, 5, 6, 7]);
});
