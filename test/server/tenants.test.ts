/**
 * Keys mode: tenant API keys on the public routes, ids scoped per tenant (a forbidden id answers exactly
 * like an unknown one), per-tenant limits with 429 + Retry-After, the combined-rank cap, reload without a
 * restart, per-tenant metrics by name, and /metrics off the public port. Real runtime, registry and app.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Hono } from 'hono';
import { createApp } from '../../src/server/app.ts';
import type { AppEnv } from '../../src/server/env.ts';
import { createLogger } from '../../src/server/logging.ts';
import { createMetricsApp } from '../../src/server/metrics-app.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { hashKey } from '../../src/server/tenants/keys-file.ts';
import { TenantLimiter } from '../../src/server/tenants/tenant-limits.ts';
import { TenantMetrics } from '../../src/server/tenants/tenant-metrics.ts';
import { TenantStore } from '../../src/server/tenants/tenant-store.ts';
import type { Tenancy } from '../../src/server/tenants/tenancy.ts';
import { request, startAdapterServer, type AdapterServer } from './adapter-server.ts';
import { REPO_ROOT, parseSSE } from './helpers.ts';

const ADMIN = 'admin-secret';
const KEY = { acme: 'sk-acme-1', globex: 'sk-globex-1', tight: 'sk-tight-1' };
const scratch = mkdtempSync(path.join(tmpdir(), 'patchbay-tenants-'));
const keysFile = path.join(scratch, 'keys.json');

function writeKeys(tenants: object[]): void {
  writeFileSync(keysFile, JSON.stringify({ tenants }));
}
const acme = { name: 'acme', keys: [`sha256:${hashKey(KEY.acme)}`], adapters: ['lora-com*'] };
const globex = { name: 'globex', keys: [`sha256:${hashKey(KEY.globex)}`], adapters: ['lora-*', 's2ft-*'], base: false };
const tight = {
  name: 'tight',
  keys: [`sha256:${hashKey(KEY.tight)}`],
  adapters: ['lora-*'],
  limits: { max_in_flight: 1, combinations_per_minute: 1 },
};

let s: AdapterServer;
let app: Hono<AppEnv>;
let store: TenantStore;
let metrics: ServerMetrics;
before(async () => {
  writeKeys([acme, globex, tight]);
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters') });
  metrics = new ServerMetrics();
  const logger = createLogger('silent');
  store = new TenantStore({ path: keysFile, logger, pollMs: 50 });
  const limiter = new TenantLimiter((t, r) => tenantMetrics.rejected(t, r));
  const tenantMetrics = new TenantMetrics(metrics.registry, () => limiter.inFlightAll());
  const tenancy: Tenancy = { store, limiter, metrics: tenantMetrics, maxCombinedRank: 256 };
  app = createApp({ state: s.state, metrics, logger, maxBodyBytes: 1 << 20, adminToken: ADMIN, tenancy, metricsAccess: 'admin' });
});
after(async () => {
  store.close();
  await s.close();
  rmSync(scratch, { recursive: true, force: true });
});

const complete = (key: string | undefined, body: object) => request(app, 'POST', '/v1/completions', { prompt: 'ROMEO.', max_tokens: 3, temperature: 0, ...body }, key);

test('public routes need a valid tenant key; probes do not', async () => {
  assert.equal((await complete(undefined, { model: 'tiny-gpt2' })).status, 401);
  const wrong = await complete('sk-nope', { model: 'tiny-gpt2' });
  assert.equal(wrong.status, 401);
  assert.match(wrong.headers.get('www-authenticate') ?? '', /Bearer/);
  assert.equal((await request(app, 'GET', '/v1/models')).status, 401);
  assert.equal((await request(app, 'GET', '/healthz')).status, 200);
  assert.equal((await complete(KEY.acme, { model: 'tiny-gpt2' })).status, 200);
});

test('/v1/models lists only what the tenant may use', async () => {
  const ids = async (key: string) => ((await (await request(app, 'GET', '/v1/models', undefined, key)).json()) as { data: { id: string }[] }).data.map((m) => m.id).sort();
  assert.deepEqual(await ids(KEY.acme), ['lora-comedy', 'tiny-gpt2']);
  assert.deepEqual(await ids(KEY.globex), ['lora-comedy', 'lora-tragedy', 's2ft-histories']);
});

test('a forbidden id answers exactly like an unknown one, and is never loaded', async () => {
  const loadsBefore = s.registry.stats().loads;
  const pairs: [object, object][] = [
    [{ model: 'lora-tragedy' }, { model: 'lora-nowhere' }],
    [{ model: 'tiny-gpt2', adapters: [{ id: 'lora-tragedy' }] }, { model: 'tiny-gpt2', adapters: [{ id: 'lora-nowhere' }] }],
    [{ model: 'lora-comedy', patches: [{ id: 'rws-x' }] }, { model: 'lora-comedy', patches: [{ id: 'rws-y' }] }],
  ];
  for (const [forbidden, unknown] of pairs) {
    const a = await complete(KEY.acme, forbidden);
    const b = await complete(KEY.acme, unknown);
    assert.equal(a.status, 404);
    assert.equal(b.status, 404);
    const norm = (t: string) => t.replaceAll(/lora-tragedy|lora-nowhere|rws-x|rws-y/g, 'ID');
    assert.equal(norm(await a.text()), norm(await b.text()));
  }
  const m1 = await request(app, 'GET', '/v1/models/lora-tragedy', undefined, KEY.acme);
  const m2 = await request(app, 'GET', '/v1/models/lora-nowhere', undefined, KEY.acme);
  assert.deepEqual([m1.status, m2.status], [404, 404]);
  assert.equal((await m1.text()).replace('lora-tragedy', 'ID'), (await m2.text()).replace('lora-nowhere', 'ID'));
  // base: false forbids the base model itself, also as a 404.
  assert.equal((await complete(KEY.globex, { model: 'tiny-gpt2' })).status, 404);
  assert.equal(s.registry.isResident('lora-tragedy'), false);
  assert.equal(s.registry.stats().loads, loadsBefore, 'no forbidden adapter was read from disk');
});

test('max_in_flight: a second concurrent request is a 429 with Retry-After; the first is unaffected', async () => {
  const long = await complete(KEY.tight, { model: 'lora-comedy', max_tokens: 60, ignore_eos: true, stream: true });
  assert.equal(long.status, 200);
  const second = await complete(KEY.tight, { model: 'lora-comedy' });
  assert.equal(second.status, 429);
  assert.match(second.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
  assert.equal(((await second.json()) as { error: { code: string } }).error.code, 'rate_limit_exceeded');
  const streamed = parseSSE(await long.text());
  assert.ok(streamed.done);
  // Other tenants are not limited by it; and once the stream ended the slot is free again.
  assert.equal((await complete(KEY.acme, { model: 'lora-comedy' })).status, 200);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal((await complete(KEY.tight, { model: 'lora-comedy' })).status, 200);
});

test('combinations_per_minute: one new mix per minute; repeating it is free', async () => {
  const mix = (w: number) => complete(KEY.tight, { model: 'tiny-gpt2', adapters: [{ id: 'lora-comedy', weight: w }, { id: 'lora-tragedy', weight: 0.5 }] });
  assert.equal((await mix(0.7)).status, 200);
  assert.equal((await mix(0.7)).status, 200);
  const other = await mix(0.3);
  assert.equal(other.status, 429);
  assert.ok(Number(other.headers.get('retry-after')) >= 1);
});

test('the limiter: token bucket per minute and combination window, on a controlled clock', () => {
  let now = 0;
  const limiter = new TenantLimiter(undefined, () => now);
  const t = { name: 't', base: true, allows: () => true, allowsPatch: () => false, limits: { tokensPerMinute: 600, combinationsPerMinute: 2 } };
  limiter.admit(t).done(900); // 600 − 900 = −300: in debt
  assert.throws(() => limiter.admit(t), (e: { status: number; retryAfterSeconds: number }) => e.status === 429 && Math.abs(e.retryAfterSeconds - 30.1) < 0.01);
  now += 31_000; // +310 tokens at 10/s
  limiter.admit(t).done(0);
  limiter.combination(t, 'a');
  limiter.combination(t, 'b');
  assert.throws(() => limiter.combination(t, 'c'), (e: { retryAfterSeconds: number }) => Math.abs(e.retryAfterSeconds - 60) < 0.01);
  limiter.combination(t, 'a');
  now += 60_000;
  limiter.combination(t, 'c');
});

test('per-tenant metrics carry the tenant name, never the key; /metrics needs the admin token in keys mode', async () => {
  assert.equal((await request(app, 'GET', '/metrics')).status, 401);
  const denied = await request(app, 'GET', '/metrics', undefined, KEY.acme);
  assert.equal(denied.status, 401);
  const text = await (await request(app, 'GET', '/metrics', undefined, ADMIN)).text();
  assert.match(text, /patchbay_tenant_requests_total\{tenant="acme",status="200"\}/);
  assert.match(text, /patchbay_tenant_rejections_total\{tenant="tight",reason="in_flight"\} 1/);
  assert.match(text, /patchbay_tenant_tokens_total\{tenant="acme",kind="total"\}/);
  for (const secret of [...Object.values(KEY), ...Object.values(KEY).map(hashKey)]) assert.ok(!text.includes(secret));
  // With a separate listener the public app has no /metrics at all.
  const publicOnly = createApp({ state: s.state, metrics, logger: createLogger('silent'), maxBodyBytes: 1 << 20, metricsAccess: 'none' });
  assert.equal((await request(publicOnly, 'GET', '/metrics')).status, 404);
  assert.equal((await request(createMetricsApp(metrics), 'GET', '/metrics')).status, 200);
});

test('the keys file reloads on change without a restart; a broken file keeps the previous keys', async () => {
  const acme2 = { ...acme, keys: [`sha256:${hashKey('sk-acme-2')}`] };
  writeKeys([acme2, globex, tight]);
  for (let i = 0; i < 100 && store.authenticate('sk-acme-2') === undefined; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await complete('sk-acme-2', { model: 'tiny-gpt2' })).status, 200);
  assert.equal((await complete(KEY.acme, { model: 'tiny-gpt2' })).status, 401, 'the rotated-out key no longer works');
  writeFileSync(keysFile, '{"tenants": [ broken');
  assert.equal(store.reload('test'), false);
  assert.equal((await complete('sk-acme-2', { model: 'tiny-gpt2' })).status, 200);
  writeKeys([acme, globex, tight]);
  assert.equal(store.reload('test'), true);
});

test('keys files are validated: hashed keys only, unique names and keys', () => {
  const bad = [
    { tenants: [{ name: 'a', keys: ['sk-plain'] }] },
    { tenants: [{ name: 'a b', keys: [`sha256:${hashKey('x')}`] }] },
    { tenants: [{ name: 'a', keys: [`sha256:${hashKey('x')}`] }, { name: 'b', keys: [`sha256:${hashKey('x')}`] }] },
    { tenants: [{ name: 'a', keys: [`sha256:${hashKey('x')}`], limits: { max_in_flight: 0 } }] },
  ];
  for (const b of bad) {
    writeFileSync(keysFile, JSON.stringify(b));
    assert.throws(() => new TenantStore({ path: keysFile, logger: createLogger('silent'), pollMs: 0 }));
  }
  writeKeys([acme, globex, tight]);
});
