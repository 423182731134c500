/**
 * Patch administration and per-request patches end to end (real runtime, real base versions, synthetic
 * patches extracted by the real rws:extract code): registration at start, apply / scale / remove through
 * base versions, idempotence, bad input changing nothing, per-request patches equal to the global ones.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { readFile } from 'node:fs/promises';
import { removeTempDirs, tempDir, realTarget, writeLora } from '../registry/fixtures.ts';
import { writePatch } from '../patches/fixtures.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const TOKEN = 'patch-admin';
let s: AdapterServer;
let outside: string;

before(async () => {
  const dir = await tempDir('patchbay-patches-');
  await writePatch(dir, 'p-one', 21);
  await writePatch(dir, 'p-two', 31);
  await writeLora(path.join(dir, 'lora-a'), await realTarget('tiny-gpt2'), { modules: ['c_attn'], rank: 4, seed: 5 });
  outside = await tempDir('patchbay-patches-out-');
  await writePatch(outside, 'p-three', 41);
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir, adminToken: TOKEN });
});
after(async () => {
  await s?.close();
  await removeTempDirs();
});

const admin = (method: string, route: string, body?: unknown) => request(s.app, method, route, body, TOKEN);
const PROMPT = 'KING.\nWhat say you, my lord';
async function complete(extra: Record<string, unknown> = {}): Promise<{ text: string; version: string }> {
  const res = await request(s.app, 'POST', '/v1/completions', { model: 'tiny-gpt2', prompt: PROMPT, max_tokens: 24, temperature: 0, ...extra });
  assert.equal(res.status, 200, await res.clone().text());
  return { text: ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text, version: res.headers.get('x-patchbay-base-version')! };
}
interface Listing { data: { id: string; active: boolean; alpha: number | null; corruption: string }[]; active: { id: string; alpha: number }[]; base_version: number }
const listing = async () => (await (await admin('GET', '/admin/patches')).json()) as Listing;
async function expectError(res: Response, status: number, code?: string): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, JSON.stringify(body));
  if (code) assert.equal(body.error.code, code, body.error.message);
  return body;
}

test('patches in the adapter directory are registered at start, applied by nobody, not listed as models', async () => {
  const l = await listing();
  assert.deepEqual(l.data.map((p) => p.id), ['p-one', 'p-two']);
  assert.ok(l.data.every((p) => !p.active && p.alpha === null));
  assert.deepEqual(l.active, []);
  assert.equal(l.base_version, 0);
  const models = (await (await request(s.app, 'GET', '/v1/models')).json()) as { data: { id: string }[] };
  assert.deepEqual(models.data.map((m) => m.id).sort(), ['lora-a', 'tiny-gpt2']);
  assert.equal((await request(s.appWithoutToken, 'GET', '/admin/patches')).status, 403);
});

test('apply → new base version serves everyone; same α again is a no-op; scale; remove restores the base output', async () => {
  const base = await complete();
  assert.equal(base.version, '0');
  const applied = await admin('POST', '/admin/patches/p-one/apply', { alpha: 40 });
  assert.equal(applied.status, 200);
  const a = (await applied.json()) as { changed: boolean; base_version: number; active: boolean; alpha: number };
  assert.equal(a.changed, true);
  assert.equal(a.active, true);
  assert.equal(a.alpha, 40);
  const patched = await complete();
  assert.equal(patched.version, String(a.base_version));
  assert.notEqual(patched.text, base.text, 'a large α changes greedy text');

  const again = (await (await admin('POST', '/admin/patches/p-one/apply', { alpha: 40 })).json()) as { changed: boolean; base_version: number };
  assert.deepEqual([again.changed, again.base_version], [false, a.base_version]);

  const scaled = (await (await admin('POST', '/admin/patches/p-one/apply', { alpha: 20 })).json()) as { changed: boolean; base_version: number; alpha: number };
  assert.equal(scaled.changed, true);
  assert.equal(scaled.alpha, 20);
  assert.deepEqual((await listing()).active, [{ id: 'p-one', alpha: 20 }]);

  const removed = (await (await admin('POST', '/admin/patches/p-one/remove')).json()) as { changed: boolean; base_version: number; active: boolean };
  assert.equal(removed.changed, true);
  assert.equal(removed.active, false);
  const restored = await complete();
  assert.equal(restored.text, base.text);
  assert.equal(restored.version, String(removed.base_version));
  const twice = (await (await admin('POST', '/admin/patches/p-one/remove')).json()) as { changed: boolean };
  assert.equal(twice.changed, false);
});

test('patches compose; a per-request patch equals the same patch applied globally and leaves the version alone', async () => {
  const v = (await listing()).base_version;
  const perRequest = await complete({ patches: [{ id: 'p-one', alpha: 30 }, { id: 'p-two', alpha: -20 }] });
  assert.equal(perRequest.version, String(v), 'a per-request patch does not touch the global version');
  assert.equal((await listing()).base_version, v);
  await admin('POST', '/admin/patches/p-one/apply', { alpha: 30 });
  await admin('POST', '/admin/patches/p-two/apply', { alpha: -20 });
  const global = await complete();
  assert.equal(global.text, perRequest.text);
  assert.deepEqual((await listing()).active, [{ id: 'p-one', alpha: 30 }, { id: 'p-two', alpha: -20 }]);
  await admin('POST', '/admin/patches/p-one/remove');
  await admin('POST', '/admin/patches/p-two/remove');
  assert.equal((await complete()).text, (await complete({ patches: [{ id: 'p-one', alpha: 0 }] })).text, 'α = 0 is the base');
});

test('a request may combine patches with adapters: the same as the adapter on the globally patched base', async () => {
  const lora = { adapters: [{ id: 'lora-a', weight: 0.3 }] };
  const both = await complete({ ...lora, patches: [{ id: 'p-one', alpha: 2 }] });
  await admin('POST', '/admin/patches/p-one/apply', { alpha: 2 });
  const global = await complete(lora);
  await admin('POST', '/admin/patches/p-one/remove');
  assert.equal(both.text, global.text);
  const [base, loraOnly, patchOnly] = [await complete(), await complete(lora), await complete({ patches: [{ id: 'p-one', alpha: 2 }] })];
  assert.notEqual(loraOnly.text, base.text, 'the adapter matters');
  assert.notEqual(both.text, loraOnly.text, 'the patch matters on top of the adapter');
  assert.notEqual(both.text, patchOnly.text, 'the adapter matters on top of the patch');
  await expectError(await request(s.app, 'POST', '/v1/completions', { model: 'tiny-gpt2', prompt: 'x', patches: [{ id: 'nope', alpha: 1 }] }), 404, 'patch_not_found');
});

test('bad input is a 4xx naming the problem and changes nothing', async () => {
  const before = await listing();
  const dir = await tempDir('patchbay-badpatch-');
  const good = path.join(outside, 'p-three', 'patch.safetensors');
  const st = decodeSafetensors(new Uint8Array(await readFile(good)));
  const tensors = Object.fromEntries([...st.header.tensors.keys()].map((k) => {
    const t = st.tensor(k);
    return [k, { dtype: t.dtype, shape: t.shape, data: t.data }];
  })) as Record<string, TensorToWrite>;
  async function variant(name: string, edit: (t: typeof tensors, m: Record<string, string>) => void): Promise<string> {
    const t = structuredClone(tensors);
    const m = { ...st.header.metadata };
    edit(t, m);
    const d = path.join(dir, name);
    await mkdir(d, { recursive: true });
    await writeFile(path.join(d, 'patch.safetensors'), encodeSafetensors(t, m));
    return d;
  }
  const range = 'transformer.h.0.mlp.c_fc.rws.range';
  const q = 'transformer.h.0.mlp.c_fc.rws.q';
  const cases: [string, string, RegExp][] = [
    [await variant('other-base', (_, m) => (m.base_model = 'smollm2')), 'other base', /made for base model 'smollm2'/],
    [await variant('other-weights', (_, m) => (m.base_fingerprint = '0'.repeat(64))), 'fingerprint', /another base/],
    [await variant('nan', (t) => ((t[range]!.data as Float32Array)[1] = Number.NaN)), 'NaN', /finite/],
    [await variant('inf', (t) => ((t[range]!.data as Float32Array)[0] = -Infinity)), 'Inf', /finite/],
    [await variant('minmax', (t) => ((t[range]!.data as Float32Array).set([1, -1]))), 'min > max', /min ≤ max/],
    [await variant('levels', (_, m) => (m.levels = '1')), 'levels', /levels is "1"/],
    [await variant('levels-q', (t, m) => { m.levels = '16'; (t[q]!.data as Uint8Array)[3] = 200; }), 'q ≥ levels', /not below levels = 16/],
    [await variant('shape', (t) => { t[q] = { dtype: 'U8', shape: [1024, 256], data: new Uint8Array(1024 * 256) }; }), 'shape', /shape \[1024, 256\], the base layer is \[256, 1024\]/],
    [await variant('unknown-layer', (t) => { t['transformer.h.9.mlp.c_fc.rws.q'] = t[q]!; t['transformer.h.9.mlp.c_fc.rws.range'] = t[range]!; }), 'unknown layer', /not a linear layer/],
    [await variant('tied', (t) => { t['lm_head.rws.q'] = { dtype: 'U8', shape: [256, 4096], data: new Uint8Array(256 * 4096) }; t['lm_head.rws.range'] = t[range]!; }), 'tied', /shared \(tied\)/],
    [path.join(s.registry.get('lora-a')!.path), 'an adapter, not a patch', /not an RWS patch/],
    [path.join(dir, 'missing'), 'missing path', /not an RWS patch/],
  ];
  for (const [p, what, message] of cases) {
    const res = await admin('POST', '/admin/patches', { id: `bad-${path.basename(p)}`, path: p });
    const body = await expectError(res, 400);
    assert.match(body.error.message, message, what);
  }
  await expectError(await admin('POST', '/admin/patches/nope/apply', { alpha: 1 }), 404, 'patch_not_found');
  await expectError(await admin('POST', '/admin/patches/nope/remove'), 404, 'patch_not_found');
  await expectError(await admin('POST', '/admin/patches/p-one/apply', { alpha: 'big' }), 400);
  await expectError(await admin('POST', '/admin/patches', { id: 'p-one', path: path.join(outside, 'p-three') }), 409, 'patch_exists');
  assert.deepEqual(await listing(), before);

  const ok = await admin('POST', '/admin/patches', { id: 'p-three', path: path.join(outside, 'p-three') });
  assert.equal(ok.status, 201);
  assert.equal(((await ok.json()) as { active: boolean }).active, false);
  assert.equal((await listing()).base_version, before.base_version);
});

test('a per-request patch on a layer without a delta branch is a 400 naming it; global apply still works', async () => {
  const narrow = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: outside, adminToken: TOKEN, deltaTargets: 'attention' });
  try {
    const res = await request(narrow.app, 'POST', '/v1/completions', { model: 'tiny-gpt2', prompt: 'x', max_tokens: 2, patches: [{ id: 'p-three', alpha: 1 }] });
    const body = await expectError(res, 400, 'patch_not_attachable');
    assert.match(body.error.message, /transformer\.h\.0\.mlp\.c_fc has no delta branch/);
    assert.equal(body.error.param, 'patches[0].id');
    const applied = await request(narrow.app, 'POST', '/admin/patches/p-three/apply', { alpha: 1 }, TOKEN);
    assert.equal(applied.status, 200);
    assert.equal(((await applied.json()) as { base_version: number }).base_version, 1);
  } finally {
    await narrow.close();
  }
});

test('admin patch paths are confined to PATCHBAY_ADAPTER_ROOTS like adapters; a refusal changes nothing', async () => {
  const root = await tempDir('patchbay-patch-root-');
  await writePatch(root, 'p-in', 51);
  // Inside the root, but its patch file links outside: refused at start (skipped) and when registered.
  const linked = path.join(root, 'p-link');
  await mkdir(linked);
  await symlink(path.join(outside, 'p-three', 'patch.safetensors'), path.join(linked, 'patch.safetensors'));
  const confined = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: root, adminToken: TOKEN, adapterRoots: [root] });
  try {
    const list = async () => (await (await request(confined.app, 'GET', '/admin/patches', undefined, TOKEN)).json()) as Listing;
    const before = await list();
    assert.deepEqual(before.data.map((p) => p.id), ['p-in'], 'the linking directory was skipped at start');
    const refused = [
      path.join(outside, 'p-three'),
      path.join(outside, 'p-three', 'patch.safetensors'),
      path.join(root, '..', path.basename(outside), 'p-three'),
      linked,
      path.join(linked, 'patch.safetensors'),
    ];
    for (const [i, p] of refused.entries()) {
      const res = await request(confined.app, 'POST', '/admin/patches', { id: `out-${i}`, path: p }, TOKEN);
      const body = await expectError(res, 400, 'adapter_path_not_allowed');
      assert.match(body.error.message, /PATCHBAY_ADAPTER_ROOTS/, p);
      assert.equal(body.error.param, 'path');
    }
    assert.deepEqual(await list(), before);
    const ok = await request(confined.app, 'POST', '/admin/patches', { id: 'p-in-again', path: path.join(root, 'p-in') }, TOKEN);
    assert.equal(ok.status, 201, await ok.clone().text());
  } finally {
    await confined.close();
  }
});
