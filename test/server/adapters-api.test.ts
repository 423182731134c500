/** Admin adapter routes: auth, register / list / delete, vLLM load / unload, bad adapters, /v1/models, metrics. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { metricValue } from './helpers.ts';
import { realTarget, removeTempDirs, tempDir, writeCorruptLora, writeLora } from '../registry/fixtures.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const TOKEN = 'test-admin-token';
const BASE = 'tiny-gpt2';
let s: AdapterServer;
let outside: string;

before(async () => {
  const target = await realTarget('tiny-gpt2');
  const dir = await tempDir();
  await writeLora(path.join(dir, 'comedy'), target, { modules: ['c_attn'], rank: 4, seed: 11 });
  await writeCorruptLora(path.join(dir, 'broken'));
  outside = await tempDir();
  await writeLora(path.join(outside, 'extra'), target, { modules: ['c_attn', 'c_proj', 'c_fc'], rank: 2, seed: 12 });
  await writeCorruptLora(path.join(outside, 'corrupt'));
  await writeLora(path.join(outside, 'for-llama'), await realTarget('tiny-llama'), { modules: ['q_proj'], rank: 2, seed: 13 });
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir, adminToken: TOKEN });
});
after(async () => {
  await s?.close();
  await removeTempDirs();
});

const admin = (method: string, route: string, body?: unknown) => request(s.app, method, route, body, TOKEN);
const ids = async (res: Response) => ((await res.json()) as { data: { id: string }[] }).data.map((d) => d.id);
const complete = (model: string) => request(s.app, 'POST', '/v1/completions', { model, prompt: 'Hello there', max_tokens: 4, temperature: 0 });

async function expectError(res: Response, status: number, code: string, param?: string | null): Promise<ErrorBody> {
  assert.equal(res.status, status);
  const body = (await res.json()) as ErrorBody;
  assert.equal(body.error.code, code, body.error.message);
  if (param !== undefined) assert.equal(body.error.param, param);
  return body;
}

test('auth: no token configured → 403; missing or wrong bearer → 401 with WWW-Authenticate; right → 200', async () => {
  for (const [method, route] of [['GET', '/admin/adapters'], ['POST', '/v1/load_lora_adapter'], ['POST', '/v1/unload_lora_adapter'], ['DELETE', '/admin/adapters/comedy']]) {
    const off = await request(s.appWithoutToken, method!, route!, {}, TOKEN);
    const body = await expectError(off, 403, 'admin_disabled');
    assert.match(body.error.message, /set PATCHBAY_ADMIN_TOKEN to enable/);
  }
  const missing = await request(s.app, 'GET', '/admin/adapters');
  assert.equal(missing.headers.get('www-authenticate')?.startsWith('Bearer'), true);
  assert.equal(((await expectError(missing, 401, 'missing_authorization')).error.type), 'authentication_error');
  for (const wrong of [`${TOKEN}x`, TOKEN.slice(0, -1), 'nope']) {
    const res = await request(s.app, 'GET', '/admin/adapters', undefined, wrong);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
    await expectError(res, 401, 'invalid_admin_token');
  }
  assert.equal((await admin('GET', '/admin/adapters')).status, 200);
  // The public routes stay public.
  assert.equal((await request(s.app, 'GET', '/v1/models')).status, 200);
});

test('/v1/models lists the base and every adapter with parent = base', async () => {
  const res = await request(s.app, 'GET', '/v1/models');
  const data = ((await res.json()) as { data: { id: string; parent: string | null; root: string }[] }).data;
  assert.deepEqual(data.map((d) => [d.id, d.parent]), [[BASE, null], ['broken', BASE], ['comedy', BASE]]);
  const one = await request(s.app, 'GET', '/v1/models/comedy');
  assert.equal(((await one.json()) as { id: string }).id, 'comedy');
});

test('register, list, use, conflict, delete through /admin/adapters', async () => {
  const extra = path.join(outside, 'extra');
  const created = await admin('POST', '/admin/adapters', { id: 'extra', path: extra });
  assert.equal(created.status, 201);
  const entry = (await created.json()) as Record<string, unknown>;
  assert.deepEqual(
    [entry.id, entry.path, entry.source, entry.kind, entry.rank, entry.resident],
    ['extra', extra, 'admin', 'lora', 2, true],
  );
  const listed = (await (await admin('GET', '/admin/adapters')).json()) as { data: { id: string }[]; stats: { registered: number }; delta_enabled: boolean };
  assert.ok(listed.data.some((d) => d.id === 'extra'));
  assert.equal(listed.delta_enabled, true);
  assert.equal(listed.stats.registered, 3);
  assert.ok((await ids(await request(s.app, 'GET', '/v1/models'))).includes('extra'));
  assert.equal((await complete('extra')).status, 200);

  await expectError(await admin('POST', '/admin/adapters', { id: 'extra', path: extra }), 409, 'adapter_exists', 'id');
  await expectError(await admin('POST', '/admin/adapters', { id: 'comedy', path: extra }), 409, 'adapter_exists', 'id');
  await expectError(await admin('POST', '/admin/adapters', { id: BASE, path: extra }), 409, 'adapter_exists', 'id');
  await expectError(await admin('POST', '/admin/adapters', { id: '../x', path: extra }), 400, 'invalid_adapter_id', 'id');
  await expectError(await admin('POST', '/admin/adapters', { id: 'x' }), 400, 'missing_required_parameter', 'path');

  const deleted = await admin('DELETE', '/admin/adapters/extra');
  assert.deepEqual(await deleted.json(), { object: 'adapter', id: 'extra', deleted: true });
  await expectError(await admin('DELETE', '/admin/adapters/extra'), 404, 'adapter_not_found', 'id');
  await expectError(await complete('extra'), 404, 'model_not_found', 'model');
  assert.ok(!(await ids(await request(s.app, 'GET', '/v1/models'))).includes('extra'));
});

test('vLLM load_lora_adapter / unload_lora_adapter: same bodies and plain-text replies', async () => {
  const load = await admin('POST', '/v1/load_lora_adapter', { lora_name: 'vllm-extra', lora_path: path.join(outside, 'extra'), load_inplace: false });
  assert.equal(load.status, 200);
  assert.equal(await load.text(), "Success: LoRA adapter 'vllm-extra' added successfully.");
  assert.equal((await complete('vllm-extra')).status, 200);
  await expectError(await admin('POST', '/v1/load_lora_adapter', { lora_name: 'vllm-extra', lora_path: path.join(outside, 'extra') }), 409, 'adapter_exists', 'lora_name');
  const unload = await admin('POST', '/v1/unload_lora_adapter', { lora_name: 'vllm-extra' });
  assert.equal(unload.status, 200);
  assert.equal(await unload.text(), "Success: LoRA adapter 'vllm-extra' removed successfully.");
  await expectError(await admin('POST', '/v1/unload_lora_adapter', { lora_name: 'vllm-extra' }), 404, 'adapter_not_found', 'lora_name');
  await expectError(await admin('POST', '/v1/load_lora_adapter', { lora_name: 'x' }), 400, 'missing_required_parameter', 'lora_path');
});

test('a corrupt or misfitting adapter → 400 with the loader message, and nothing changes', async () => {
  const snapshot = async () => ({
    admin: ((await (await admin('GET', '/admin/adapters')).json()) as { data: unknown[] }).data,
    models: await ids(await request(s.app, 'GET', '/v1/models')),
  });
  const before = await snapshot();
  const corrupt = await expectError(await admin('POST', '/admin/adapters', { id: 'bad', path: path.join(outside, 'corrupt') }), 400, 'invalid_safetensors', 'path');
  assert.match(corrupt.error.message, /bad\/adapter_model\.safetensors/);
  const misfit = await admin('POST', '/v1/load_lora_adapter', { lora_name: 'bad', lora_path: path.join(outside, 'for-llama') });
  assert.equal(misfit.status, 400);
  assert.equal(((await misfit.json()) as ErrorBody).error.param, 'lora_path');
  await expectError(await admin('POST', '/admin/adapters', { id: 'bad', path: path.join(outside, 'nowhere') }), 400, 'adapter_path_not_found', 'path');
  // The broken directory adapter fails where it is used, as a 400 naming the field.
  const broken = await expectError(await complete('broken'), 400, 'invalid_safetensors', 'model');
  assert.ok(!broken.error.message.includes(outside) && !broken.error.message.includes('/tmp'), 'no server paths on a public route');
  assert.deepEqual(await snapshot(), before);
  await expectError(await complete('bad'), 404, 'model_not_found', 'model');
  assert.equal((await complete(BASE)).status, 200, 'the base still serves');
});

test('metrics: load histogram, cache counters, resident bytes and requests by adapter', async () => {
  assert.equal((await complete('comedy')).status, 200);
  assert.equal((await complete('comedy')).status, 200);
  const text = await (await request(s.app, 'GET', '/metrics')).text();
  assert.ok((metricValue(text, 'patchbay_adapter_requests_total', { kind: 'lora', adapter: 'comedy' }) ?? 0) >= 2);
  assert.ok((metricValue(text, 'patchbay_adapter_requests_total', { kind: 'base', adapter: BASE }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_adapter_load_duration_seconds_count', { kind: 'lora', outcome: 'ok' }) ?? 0) >= 1);
  assert.ok((metricValue(text, 'patchbay_adapter_load_duration_seconds_count', { kind: 'unknown', outcome: 'error' }) ?? 0) >= 1);
  const stats = s.registry.stats();
  assert.equal(metricValue(text, 'patchbay_adapter_cache_hits_total'), stats.hits);
  assert.equal(metricValue(text, 'patchbay_adapter_cache_misses_total'), stats.misses);
  assert.equal(metricValue(text, 'patchbay_adapter_resident_bytes'), stats.residentBytes);
  assert.ok(stats.residentBytes > 0);
  assert.equal(metricValue(text, 'patchbay_adapters_registered'), stats.registered);
  assert.equal(metricValue(text, 'patchbay_adapter_requests_total', { adapter: 'nope' }), undefined);
});
