/**
 * Generator administration through the HTTP API on the real runtime: register (validated by loading),
 * serve, unregister; conflicts with adapter ids; refused registrations change nothing; a server on another
 * base refuses the generator.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { realTarget, removeTempDirs, tempDir } from '../registry/fixtures.ts';
import { writeSyntheticGenerator } from '../helpers/synthetic-generator.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const TOKEN = 'gen-admin';
const SHIPPED = 'adapters/gen-speaker';
let s: AdapterServer;
let dir: string;
/** The server's only PATCHBAY_ADAPTER_ROOTS entry, so the confinement case holds wherever the checkout lives. */
let roots: string;
let copy: string;

before(async () => {
  dir = await tempDir('patchbay-gen-admin-');
  // An adapter dir with one LoRA and no generator: generators arrive through the admin API.
  await cp('adapters/lora-comedy', path.join(dir, 'lora-comedy'), { recursive: true });
  roots = await tempDir('patchbay-gen-roots-');
  copy = path.join(roots, 'speaker');
  await cp(SHIPPED, copy, { recursive: true });
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir, adminToken: TOKEN, adapterRoots: [roots] });
});
after(async () => {
  await s?.close();
  await removeTempDirs();
});

const admin = (method: string, route: string, body?: unknown) => request(s.app, method, route, body, TOKEN);
const listIds = async () => ((await (await admin('GET', '/admin/generators')).json()) as { data: { id: string }[] }).data.map((g) => g.id);
const modelIds = async () => ((await (await request(s.app, 'GET', '/v1/models')).json()) as { data: { id: string }[] }).data.map((m) => m.id);

async function expectError(res: Response, status: number, code: string, pattern?: RegExp): Promise<void> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, body.error.message);
  assert.equal(body.error.code, code, body.error.message);
  if (pattern) assert.match(body.error.message, pattern);
}

const ask = (model: string, condition: unknown) => request(s.app, 'POST', '/v1/completions', { model, condition, prompt: 'ROMEO.\nBut soft,', max_tokens: 8, temperature: 0 });

test('register → listed and served; unregister → gone (404), its factors dropped', async () => {
  assert.deepEqual(await listIds(), []);
  const res = await admin('POST', '/admin/generators', { id: 'speaker', path: copy });
  assert.equal(res.status, 201, await res.clone().text());
  const view = (await res.json()) as { id: string; loaded: boolean; examples: string[] };
  assert.deepEqual([view.id, view.loaded], ['speaker', true]);
  assert.deepEqual(await listIds(), ['speaker']);
  assert.ok((await modelIds()).includes('speaker'));
  const served = await ask('speaker', view.examples[0]);
  assert.equal(served.status, 200, await served.clone().text());
  const bytes = s.registry.stats().residentBytes;
  assert.equal((await admin('DELETE', '/admin/generators/speaker')).status, 200);
  assert.ok(s.registry.stats().residentBytes < bytes, 'its generated factors left the cache');
  assert.deepEqual(await listIds(), []);
  assert.ok(!(await modelIds()).includes('speaker'));
  await expectError(await ask('speaker', view.examples[0]), 404, 'model_not_found');
  await expectError(await admin('DELETE', '/admin/generators/speaker'), 404, 'generator_not_found');
});

test('refused registrations are 4xx naming the problem and change nothing', async () => {
  await admin('POST', '/admin/generators', { id: 'kept', path: copy });
  const before = [await listIds(), await modelIds(), s.registry.stats().resident];
  const wrongBase = path.join(roots, 'wrong-base');
  await cp(copy, wrongBase, { recursive: true });
  const manifest = JSON.parse(await readFile(path.join(wrongBase, 'generator.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(path.join(wrongBase, 'generator.json'), JSON.stringify({ ...manifest, base_model: 'tiny-llama' }));
  const empty = path.join(roots, 'empty');
  await mkdir(empty);
  const outside = path.join(await tempDir(), 'speaker-outside');
  await cp(SHIPPED, outside, { recursive: true });
  const nanAtZero = await writeSyntheticGenerator(path.join(roots, 'nan'), (await realTarget('tiny-gpt2')), { modules: ['transformer.h.0.attn.c_attn'], rank: 2, conditionDim: 3, seed: 1, shift: -2 });

  await expectError(await admin('POST', '/admin/generators', { id: 'kept', path: copy }), 409, 'generator_exists');
  await expectError(await admin('POST', '/admin/generators', { id: 'lora-comedy', path: copy }), 409, 'generator_exists');
  await expectError(await admin('POST', '/admin/adapters', { id: 'kept', path: 'adapters/lora-comedy' }), 409, 'adapter_exists');
  await expectError(await admin('POST', '/admin/generators', { id: 'tiny-gpt2', path: copy }), 409, 'generator_exists');
  await expectError(await admin('POST', '/admin/generators', { id: 'x', path: wrongBase }), 400, 'generator_base_mismatch', /trained on base model tiny-llama/);
  await expectError(await admin('POST', '/admin/generators', { id: 'x', path: empty }), 400, 'invalid_generator', /no generator\.json/);
  await expectError(await admin('POST', '/admin/generators', { id: 'x', path: '/no/such/dir' }), 400, 'adapter_path_not_found');
  // Admin paths are confined to PATCHBAY_ADAPTER_ROOTS, as adapters' are.
  await expectError(await admin('POST', '/admin/generators', { id: 'x', path: outside }), 400, 'adapter_path_not_allowed', /PATCHBAY_ADAPTER_ROOTS/);
  await expectError(await admin('POST', '/admin/generators', { id: 'x', path: nanAtZero }), 400, 'invalid_generator', /NaN/);
  await expectError(await admin('POST', '/admin/generators', { id: '../x', path: copy }), 400, 'invalid_adapter_id');
  assert.deepEqual([await listIds(), await modelIds(), s.registry.stats().resident], before);
  assert.equal((await ask('kept', 'FALSTAFF')).status, 200, 'what was registered still serves');
});

test('a server on another base refuses the generator: its modules are not that base\'s layers', async () => {
  const llamaDir = await tempDir();
  await cp(SHIPPED, path.join(llamaDir, 'speaker'), { recursive: true });
  const llama = await startAdapterServer({ model: 'tiny-llama', adapterDir: llamaDir, adminToken: TOKEN });
  try {
    // In its adapter dir: not listed, and asking for it says why.
    const listed = (await (await request(llama.app, 'GET', '/admin/generators', undefined, TOKEN)).json()) as { data: unknown[] };
    assert.deepEqual(listed.data, []);
    await expectError(await request(llama.app, 'POST', '/v1/completions', { model: 'speaker', condition: 'FALSTAFF', prompt: 'x' }), 400, 'generator_base_mismatch', /trained on base model tiny-gpt2/);
    const manifest = JSON.parse(await readFile(path.join(copy, 'generator.json'), 'utf8')) as Record<string, unknown>;
    const renamed = path.join(await tempDir(), 'renamed');
    await cp(copy, renamed, { recursive: true });
    // Claims the right base by name, so only the shapes can tell.
    await writeFile(path.join(renamed, 'generator.json'), JSON.stringify({ ...manifest, base_model: 'tiny-llama' }));
    const res = await request(llama.app, 'POST', '/admin/generators', { id: 'g', path: renamed }, TOKEN);
    await expectError(res, 400, 'generator_base_mismatch', /none of its \d+ modules/);
    const cond = await request(llama.app, 'POST', '/v1/completions', { model: 'g', condition: 'FALSTAFF', prompt: 'x' });
    assert.equal(cond.status, 404);
  } finally {
    await llama.close();
  }
});

test('a server without delta branches refuses generator requests (400) and does not advertise generators', async () => {
  const plain = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: 'adapters', deltaTargets: 'none', adminToken: TOKEN });
  try {
    const res = await request(plain.app, 'POST', '/v1/completions', { model: 'gen-speaker', condition: 'FALSTAFF', prompt: 'x', max_tokens: 2 });
    await expectError(res, 400, 'adapters_disabled');
    const models = (await (await request(plain.app, 'GET', '/v1/models')).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['tiny-gpt2']);
    await expectError(await request(plain.app, 'POST', '/admin/generators', { id: 'g', path: copy }, TOKEN), 400, 'adapters_disabled');
  } finally {
    await plain.close();
  }
});
