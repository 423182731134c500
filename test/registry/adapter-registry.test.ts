/** AdapterRegistry against the real tiny-llama graph and real PEFT LoRA files (no runtime session needed). */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { AttachTarget } from '../../src/adapters/index.ts';
import { PatchbayError } from '../../src/errors.ts';
import { adapterId } from '../../src/registry/adapter-id.ts';
import { AdapterRegistry, type RegistryOptions } from '../../src/registry/adapter-registry.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';
import { loraBytes, realTarget, removeTempDirs, tempDir, writeCorruptLora, writeLora } from './fixtures.ts';

const QV = { modules: ['q_proj', 'v_proj'], rank: 4 };
let target: AttachTarget;
let dir: string;
let oneAdapter: number;

before(async () => {
  target = await realTarget('tiny-llama');
  dir = await tempDir();
  await writeLora(path.join(dir, 'alpha'), target, { ...QV, seed: 1 });
  await writeLora(path.join(dir, 'beta'), target, { ...QV, seed: 2 });
  await writeLora(path.join(dir, 'gamma'), target, { modules: ['o_proj'], rank: 2, seed: 3 });
  await writeCorruptLora(path.join(dir, 'broken'));
  await mkdir(path.join(dir, 'not an id'));
  oneAdapter = loraBytes(target, QV);
});
after(removeTempDirs);

const registry = (opts: Partial<RegistryOptions> = {}) =>
  new AdapterRegistry({ adapterDir: dir, adapterRoots: [tmpdir()], maxBytes: 64 << 20, target, reserved: ['tiny-llama'], ...opts });

/** y = x·(a·b) summed over layers, for a fixed x: a cheap fingerprint of a binding's ΔW. */
function apply(binding: DeltaBinding, layer: string, x: Float32Array): Float64Array {
  const f = binding.layers.get(layer);
  const dOut = target.layers.get(layer)!.dOut;
  const y = new Float64Array(dOut);
  if (!f) return y;
  for (let j = 0; j < f.rank; j++) {
    let h = 0;
    for (let i = 0; i < x.length; i++) h += x[i]! * f.a[i * f.rank + j]!;
    for (let o = 0; o < dOut; o++) y[o]! += h * f.b[j * dOut + o]!;
  }
  return y;
}

async function rejects400(p: Promise<unknown>, code?: string): Promise<PatchbayError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof PatchbayError, `expected a PatchbayError, got ${String(err)}`);
  assert.equal(err.status, 400, err.message);
  if (code) assert.equal(err.code, code);
  return err;
}

test('scan lists one entry per valid adapter directory, without loading', async () => {
  const r = registry();
  const ids = (await r.scan()).map((e) => e.id);
  assert.deepEqual(ids, ['alpha', 'beta', 'broken', 'gamma']);
  assert.equal(r.stats().loads, 0);
});

test('LRU eviction by bytes: a budget of one adapter keeps only the latest', async () => {
  const r = registry({ maxBytes: Math.floor(oneAdapter * 1.5) });
  await r.binding('alpha');
  await r.binding('beta');
  let s = r.stats();
  assert.equal(s.evictions, 1);
  assert.equal(s.resident, 1);
  assert.ok(s.residentBytes <= Math.floor(oneAdapter * 1.5));
  assert.equal(r.isResident('alpha'), false);
  assert.equal(r.isResident('beta'), true);
  await r.binding('alpha'); // reloaded from disk (or revived, if alpha's old factors were not collected yet), evicting beta
  s = r.stats();
  assert.deepEqual([s.loads + s.revived, s.evictions, s.hits, s.misses + s.revived], [3, 2, 0, 3]);
  await r.binding('alpha');
  assert.equal(r.stats().hits, 1);
});

test('concurrent requests for one id load it once and share the factors', async () => {
  const r = registry();
  const all = await Promise.all(Array.from({ length: 6 }, () => r.binding('alpha')));
  assert.equal(r.stats().loads, 1);
  assert.ok(all.every((b) => b === all[0]));
  assert.equal(all[0]!.key, 'alpha');
  assert.equal(r.get('alpha')?.kind, 'lora');
  assert.equal(r.get('alpha')?.rank, 4);
});

test('combination: exact Task Arithmetic, one cache key whatever the order, repeated ids merged', async () => {
  const r = registry();
  const ab = await r.combination([{ id: 'alpha', weight: 0.7 }, { id: 'beta', weight: -0.3 }]);
  const ba = await r.combination([{ id: 'beta', weight: -0.3 }, { id: 'alpha', weight: 0.7 }]);
  const merged = await r.combination([{ id: 'beta', weight: -0.3 }, { id: 'alpha', weight: 0.5 }, { id: 'alpha', weight: 0.2 }]);
  assert.equal(ab, ba);
  assert.equal(merged, ab, 'alpha*0.5 + alpha*0.2 merges into alpha*0.7');
  assert.equal(r.stats().loads, 3, 'alpha, beta and the combination, each once');
  assert.equal(r.stats().resident, 3);

  const a = await r.binding('alpha');
  const b = await r.binding('beta');
  const layer = 'model.layers.1.self_attn.q_proj';
  const x = Float32Array.from({ length: 128 }, (_, i) => Math.sin(i + 1));
  const got = apply(ab, layer, x);
  const ya = apply(a, layer, x);
  const yb = apply(b, layer, x);
  got.forEach((v, o) => assert.ok(Math.abs(v - (0.7 * ya[o]! - 0.3 * yb[o]!)) < 1e-4, `output ${o}`));
  assert.equal(ab.layers.get(layer)!.rank, 8, 'factors concatenated along the rank');

  const same = await r.combination([{ id: 'alpha', weight: 1 }]);
  assert.equal(same, a, 'a single adapter at weight 1 is the adapter itself');
});

test('a failed registration leaves the list, the cache and the id as they were', async () => {
  const r = registry();
  await r.scan();
  await r.binding('alpha');
  const before = { list: r.list(), stats: r.stats() };
  const other = await tempDir();
  await rejects400(r.register(adapterId('extra'), await writeCorruptLora(path.join(other, 'corrupt'))));
  const wrongShape = await writeLora(path.join(other, 'llama-on-gpt2'), await realTarget('tiny-gpt2'), { modules: ['c_attn'], rank: 2, seed: 4 });
  const err = await rejects400(r.register(adapterId('extra'), wrongShape));
  assert.match(err.message, /extra/);
  await rejects400(r.register(adapterId('extra'), path.join(other, 'missing')), 'adapter_path_not_found');
  assert.deepEqual(r.list(), before.list);
  assert.deepEqual(r.stats(), before.stats);
  // The id is still free.
  const entry = await r.register(adapterId('extra'), path.join(dir, 'gamma'));
  assert.deepEqual([entry.id, entry.source, entry.kind, entry.rank], ['extra', 'admin', 'lora', 2]);
  assert.equal(r.isResident('extra'), true);
});

test('a broken adapter in the directory is a 400 on use and changes nothing', async () => {
  const r = registry();
  await r.scan();
  const before = r.stats();
  const err = await rejects400(r.binding('broken', 'adapters[1].id'));
  assert.equal(err.param, 'adapters[1].id', 'the error names the request field');
  assert.deepEqual(r.stats(), { ...before, misses: before.misses + 1 });
});

test('register conflicts: an existing id, a directory adapter, the base id, two at once → 409', async () => {
  const r = registry();
  const status = (p: Promise<unknown>) => p.then(() => 200, (e: PatchbayError) => e.status);
  assert.equal(await status(r.register(adapterId('alpha'), path.join(dir, 'beta'))), 409, 'found in the directory');
  assert.equal(await status(r.register(adapterId('tiny-llama'), path.join(dir, 'beta'))), 409, 'reserved base id');
  const both = await Promise.all([r.register(adapterId('twin'), path.join(dir, 'beta')), r.register(adapterId('twin'), path.join(dir, 'beta'))].map(status));
  assert.deepEqual(both.sort(), [200, 409]);
});

test('unregister drops the adapter and every combination built from it; the directory stays hidden', async () => {
  const r = registry();
  await r.scan();
  const mix = await r.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]);
  await r.combination([{ id: 'beta', weight: 0.5 }, { id: 'gamma', weight: 0.5 }]);
  assert.equal(r.stats().resident, 5);
  await r.unregister('alpha');
  assert.equal(r.stats().resident, 3, 'beta, gamma and their mix remain');
  assert.equal(r.has('alpha'), false);
  assert.ok(!r.list().some((e) => e.id === 'alpha'));
  await assert.rejects(r.binding('alpha'), (e: PatchbayError) => e.status === 404 && e.code === 'adapter_not_found');
  await assert.rejects(r.unregister('alpha'), (e: PatchbayError) => e.status === 404);

  await r.register(adapterId('alpha'), path.join(dir, 'gamma')); // the id now means other weights
  const again = await r.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]);
  assert.notEqual(again, mix);
  assert.equal(again.layers.has('model.layers.0.self_attn.o_proj'), true, 'built from the new alpha');
});

test('unregister during a load: the stale load is dropped (404 for its caller), not cached', async () => {
  const r = registry();
  const pending = r.binding('beta');
  await r.unregister('beta');
  await assert.rejects(pending, (e: PatchbayError) => e.status === 404 && e.code === 'adapter_not_found');
  assert.equal(r.isResident('beta'), false);
  assert.equal(r.has('beta'), false);
});

test('ids are never paths: traversal and separators are rejected or unknown', async () => {
  for (const bad of ['../x', '..', 'a/b', '/etc', 'a\\b', '.hidden', '']) {
    assert.throws(() => adapterId(bad), (e: PatchbayError) => e.status === 400 && e.code === 'invalid_adapter_id', bad);
  }
  const r = registry();
  assert.deepEqual((await r.scan()).map((e) => e.id).includes('not an id' as never), false);
  for (const bad of ['../x', `../${path.basename(dir)}/alpha`, 'not an id']) {
    assert.equal(r.has(bad), false, bad);
    await assert.rejects(r.binding(bad), (e: PatchbayError) => e.status === 404, bad);
  }
});

test('without delta branches every load is a 400 that says so', async () => {
  const r = registry({ target: undefined });
  assert.equal(r.enabled, false);
  const err = await rejects400(r.binding('alpha'), 'adapters_disabled');
  assert.match(err.message, /started without delta branches/);
  await rejects400(r.register(adapterId('extra'), path.join(dir, 'alpha')), 'adapters_disabled');
});
