/**
 * Generations with adapters through the HTTP API on the real runtime: `model: <adapter>`, `adapters: [...]`
 * (exact Task Arithmetic), mixed batches, unknown ids, and a server started without delta branches.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { realTarget, removeTempDirs, tempDir, writeLora } from '../registry/fixtures.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const BASE = 'tiny-gpt2';
const PROMPT = 'Once upon a time there was a little';
let s: AdapterServer;
let dir: string;

before(async () => {
  const target = await realTarget('tiny-gpt2');
  dir = await tempDir();
  await writeLora(path.join(dir, 'comedy'), target, { modules: ['c_attn'], rank: 4, seed: 21 });
  await writeLora(path.join(dir, 'tragedy'), target, { modules: ['c_attn', 'c_proj', 'c_fc'], rank: 2, seed: 22 });
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir });
});
after(async () => {
  await s?.close();
  await removeTempDirs();
});

type Extra = Record<string, unknown>;
const completion = (model: string, extra: Extra = {}) =>
  request(s.app, 'POST', '/v1/completions', { model, prompt: PROMPT, max_tokens: 16, temperature: 0, ...extra });

async function text(model: string, extra: Extra = {}): Promise<string> {
  const res = await completion(model, extra);
  const body = (await res.json()) as { model: string; choices: { text: string }[] } & Partial<ErrorBody>;
  assert.equal(res.status, 200, body.error?.message);
  assert.equal(body.model, model, 'the response echoes the requested model');
  return body.choices[0]!.text;
}

async function expectError(res: Response, status: number, code: string, param: string | null): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, body.error.message);
  assert.deepEqual([body.error.code, body.error.param], [code, param]);
  return body;
}

test('greedy text with `model: <adapter>` differs from the base and between adapters, and is repeatable', async () => {
  const base = await text(BASE);
  const comedy = await text('comedy');
  const tragedy = await text('tragedy');
  assert.notEqual(comedy, base);
  assert.notEqual(tragedy, base);
  assert.notEqual(comedy, tragedy);
  assert.equal(await text('comedy'), comedy);
  assert.equal(await text(BASE), base, 'serving adapters left the base untouched');
});

test('chat completions take an adapter too', async () => {
  const chat = (model: string) =>
    request(s.app, 'POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: PROMPT }], max_tokens: 8, temperature: 0 });
  const [base, comedy] = await Promise.all([chat(BASE), chat('comedy')]);
  assert.equal(base.status, 200);
  assert.equal(comedy.status, 200);
  const content = async (r: Response) => ((await r.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
  assert.notEqual(await content(comedy), await content(base));
});

test('`adapters: [{id, weight}]` is exact Task Arithmetic on top of `model`', async () => {
  const base = await text(BASE);
  const comedy = await text('comedy');
  assert.equal(await text(BASE, { adapters: [{ id: 'comedy', weight: 1 }] }), comedy, 'base + comedy·1 = comedy');
  assert.equal(await text(BASE, { adapters: [{ id: 'comedy' }] }), comedy, 'weight defaults to 1');
  assert.equal(await text(BASE, { adapters: [{ id: 'comedy', weight: 0 }] }), base, 'weight 0 = the base');
  assert.equal(await text('comedy', { adapters: [{ id: 'comedy', weight: -1 }] }), base, 'model joins with weight 1: 1 − 1 = 0');
  assert.equal(
    await text(BASE, { adapters: [{ id: 'comedy', weight: 0.5 }, { id: 'comedy', weight: 0.5 }] }),
    comedy,
    'repeated ids add up',
  );
  const mix = await text(BASE, { adapters: [{ id: 'comedy', weight: 0.6 }, { id: 'tragedy', weight: 0.6 }] });
  assert.equal(await text(BASE, { adapters: [{ id: 'tragedy', weight: 0.6 }, { id: 'comedy', weight: 0.6 }] }), mix, 'order-free');
  assert.notEqual(mix, base);
});

test('a mixed batch gives each request what it gets alone', async () => {
  const variants: [string, Extra][] = [
    [BASE, {}],
    ['comedy', {}],
    ['tragedy', {}],
    [BASE, { adapters: [{ id: 'comedy', weight: 0.5 }, { id: 'tragedy', weight: -0.5 }] }],
  ];
  const alone: string[] = [];
  for (const [model, extra] of variants) alone.push(await text(model, extra));
  const together = await Promise.all([...variants, ...variants].map(([model, extra]) => text(model, extra)));
  assert.deepEqual(together, [...alone, ...alone]);
});

test('unknown ids → 404 naming the field (models, adapters, patches); a condition for an adapter is 400 not_a_generator', async () => {
  await expectError(await completion('nope'), 404, 'model_not_found', 'model');
  await expectError(await completion('../comedy'), 404, 'model_not_found', 'model');
  await expectError(await completion(BASE, { adapters: [{ id: 'comedy' }, { id: 'nope', weight: 1 }] }), 404, 'adapter_not_found', 'adapters[1].id');
  await expectError(await completion(BASE, { adapters: [{ id: 'comedy', weight: 'x' }] }), 400, 'invalid_type', 'adapters[0].weight');
  await expectError(await completion(BASE, { patches: [{ id: 'p' }] }), 404, 'patch_not_found', 'patches[0].id');
  await expectError(await completion('comedy', { condition: 'x' }), 400, 'not_a_generator', 'condition');
});

test('PATCHBAY_DELTA_TARGETS=none: adapters are refused with a clear 400 and not advertised', async () => {
  const plain = await startAdapterServer({ model: 'tiny-llama', adapterDir: dir, deltaTargets: 'none', adminToken: 't' });
  try {
    assert.equal(plain.runtime.rewrite, undefined);
    const models = (await (await request(plain.app, 'GET', '/v1/models')).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['tiny-llama']);
    const req = (body: Extra) => request(plain.app, 'POST', '/v1/completions', { prompt: 'hi', max_tokens: 2, ...body });
    const named = await expectError(await req({ model: 'comedy' }), 400, 'adapters_disabled', 'model');
    assert.match(named.error.message, /this server was started without delta branches/);
    await expectError(await req({ model: 'tiny-llama', adapters: [{ id: 'comedy' }] }), 400, 'adapters_disabled', 'adapters');
    await expectError(await req({ model: 'nope' }), 404, 'model_not_found', 'model');
    assert.equal((await req({ model: 'tiny-llama' })).status, 200);
    const reg = await request(plain.app, 'POST', '/admin/adapters', { id: 'x', path: path.join(dir, 'comedy') }, 't');
    await expectError(reg, 400, 'adapters_disabled', null);
  } finally {
    await plain.close();
  }
});
