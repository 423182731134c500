/**
 * The repository's demo adapters (trained with real PEFT by tools/adapters, committed in <repo>/adapters)
 * served through the API on tiny-gpt2.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { REPO_ROOT } from '../registry/fixtures.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const DIR = path.join(REPO_ROOT, 'adapters');
const GPT2_SET = ['lora-comedy', 'lora-tragedy', 's2ft-histories'];

let s: AdapterServer;
before(async () => {
  // PATCHBAY_ADAPTER_ROOTS: the test registers the tiny-Llama adapter from the fixtures directory.
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: DIR, adminToken: 'test-token', adapterRoots: [path.join(REPO_ROOT, 'test', 'fixtures')] });
});
after(() => s?.close());

async function complete(body: Record<string, unknown>): Promise<{ status: number; text: string; error?: ErrorBody['error'] }> {
  const res = await request(s.app, 'POST', '/v1/completions', { prompt: 'HAMLET.\nTo be, or not', max_tokens: 20, temperature: 0, ...body });
  const json = (await res.json()) as { choices?: { text: string }[] } & Partial<ErrorBody>;
  return { status: res.status, text: json.choices?.[0]?.text ?? '', ...(json.error ? { error: json.error } : {}) };
}

test('every demo adapter for this base loads and changes greedy text; so does their mix', async () => {
  const base = await complete({ model: 'tiny-gpt2' });
  const texts = new Map<string, string>();
  for (const id of GPT2_SET) {
    const r = await complete({ model: id });
    assert.equal(r.status, 200, r.error?.message);
    assert.notEqual(r.text, base.text, `${id} changes the output`);
    texts.set(id, r.text);
  }
  assert.equal(new Set(texts.values()).size, GPT2_SET.length, 'each adapter gives its own text');
  assert.equal(s.registry.get('lora-comedy')?.kind, 'lora');
  assert.equal(s.registry.get('s2ft-histories')?.kind, 's2ft');

  const mix = await complete({ model: 'tiny-gpt2', adapters: [{ id: 'lora-comedy', weight: 0.5 }, { id: 's2ft-histories', weight: 0.5 }] });
  assert.equal(mix.status, 200, mix.error?.message);
  const one = await complete({ model: 'tiny-gpt2', adapters: [{ id: 'lora-tragedy', weight: 1 }] });
  assert.equal(one.text, texts.get('lora-tragedy'));
});

test('an adapter trained for another base is refused with a 400 naming both, and changes nothing', async () => {
  const before = (await (await request(s.app, 'GET', '/v1/models')).json()) as unknown;
  const lora_path = path.join(REPO_ROOT, 'test/fixtures/adapters/tiny-llama/lora-llama-qv');
  const res = await request(s.app, 'POST', '/v1/load_lora_adapter', { lora_name: 'lora-llama-qv', lora_path }, 'test-token');
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, 400);
  assert.equal(body.error.code, 'adapter_base_mismatch');
  assert.match(body.error.message, /tiny-llama.*tiny-gpt2/);
  assert.deepEqual(await (await request(s.app, 'GET', '/v1/models')).json(), before);
});
