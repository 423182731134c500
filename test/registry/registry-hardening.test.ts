/**
 * Refusals of the registry: pin budget, non-finite tensors, paths that escape the allowed directories,
 * adapters larger than the cache, and the short negative cache of failed loads. Each refusal is a 4xx with a
 * message, and leaves the registry exactly as it was.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { AttachTarget } from '../../src/adapters/index.ts';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { PatchbayError } from '../../src/errors.ts';
import { adapterId } from '../../src/registry/adapter-id.ts';
import { AdapterRegistry, type LoadEvent, type RegistryOptions } from '../../src/registry/adapter-registry.ts';
import { loraBytes, realTarget, removeTempDirs, tempDir, writeCorruptLora, writeLora } from './fixtures.ts';

const QV = { modules: ['q_proj', 'v_proj'], rank: 4 };
let target: AttachTarget;
let dir: string;
let roots: string;
let outside: string;
let one: number;

before(async () => {
  target = await realTarget('tiny-llama');
  dir = await tempDir();
  roots = await tempDir();
  outside = await tempDir();
  for (const [id, seed] of [['alpha', 1], ['beta', 2], ['gamma', 3]] as const) await writeLora(path.join(dir, id), target, { ...QV, seed });
  for (const [id, seed] of [['p1', 4], ['p2', 5], ['p3', 6]] as const) await writeLora(path.join(roots, id), target, { ...QV, seed });
  await writeCorruptLora(path.join(dir, 'broken'));
  await writeLora(path.join(outside, 'elsewhere'), target, { ...QV, seed: 8 });
  // A directory symlinked out of the adapter dir, and a directory whose weights file links out.
  await symlink(path.join(outside, 'elsewhere'), path.join(dir, 'linked-dir'));
  await mkdir(path.join(dir, 'linked-file'));
  await writeFile(path.join(dir, 'linked-file', 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 4, target_modules: QV.modules }));
  await symlink(path.join(outside, 'elsewhere', 'adapter_model.safetensors'), path.join(dir, 'linked-file', 'adapter_model.safetensors'));
  await symlink(path.join(outside, 'elsewhere'), path.join(roots, 'escape'));
  one = loraBytes(target, QV);
});
after(removeTempDirs);

const registry = (opts: Partial<RegistryOptions> = {}) =>
  new AdapterRegistry({ adapterDir: dir, adapterRoots: [roots], maxBytes: 64 << 20, target, ...opts });

async function refused(p: Promise<unknown>, status: number, code: string): Promise<PatchbayError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof PatchbayError, `expected a PatchbayError, got ${String(err)}`);
  assert.deepEqual([err.status, err.code], [status, code], err.message);
  assert.ok(err.message.length > 20, 'says why');
  return err;
}

/** Everything observable about the registry, to compare before and after a refusal. */
const snapshot = (r: AdapterRegistry) => JSON.stringify({ list: r.list(), stats: r.stats() });

test('pinned adapters are never evicted; a pin past the budget is refused and changes nothing', async () => {
  const r = registry({ maxBytes: Math.floor(one * 2.5) });
  await r.register(adapterId('p1'), path.join(roots, 'p1'), undefined, true);
  await r.register(adapterId('p2'), path.join(roots, 'p2'), undefined, true);
  const before = snapshot(r);
  const err = await refused(r.register(adapterId('p3'), path.join(roots, 'p3'), undefined, true), 409, 'pinned_budget_exceeded');
  assert.match(err.message, /pinned entries already hold/);
  assert.equal(snapshot(r), before);
  assert.equal(r.has('p3'), false);
  // Unpinned traffic churns through what is left (half an adapter: too little for one) without touching pins.
  await refused(r.binding('alpha'), 400, 'adapter_too_large');
  assert.deepEqual([r.isPinnedResident('p1'), r.isPinnedResident('p2')], [true, true]);
  assert.equal(r.stats().pinnedBytes, 2 * one);
});

test('pinned entries survive any amount of unpinned churn', async () => {
  const r = registry({ maxBytes: Math.floor(one * 2.5) });
  await r.register(adapterId('p1'), path.join(roots, 'p1'), undefined, true);
  for (const id of ['alpha', 'beta', 'gamma', 'alpha', 'beta']) await r.binding(id);
  assert.equal(r.isPinnedResident('p1'), true);
  assert.ok(r.stats().evictions >= 3);
  assert.ok(r.stats().residentBytes <= Math.floor(one * 2.5));
  await r.unregister('p1');
  assert.equal(r.stats().pinnedBytes, 0, 'unregistering a pinned adapter frees its budget');
});

test('an adapter with NaN or ±Inf anywhere is refused naming the tensor, and never served', async () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const d = path.join(roots, `nonfinite-${String(bad)}`);
    await writeLora(d, target, { ...QV, seed: 9 });
    const layer = [...target.layers.values()].find((l) => l.name.endsWith('.v_proj'))!;
    const tensors: Record<string, TensorToWrite> = {};
    for (const l of target.layers.values()) {
      if (!QV.modules.some((m) => l.name.endsWith(`.${m}`))) continue;
      const B = new Float32Array(l.dOut * 4).fill(0.01);
      if (l === layer) B[17] = bad;
      tensors[`base_model.model.${l.name}.lora_A.weight`] = { dtype: 'F32', shape: [4, l.dIn], data: new Float32Array(4 * l.dIn).fill(0.01) };
      tensors[`base_model.model.${l.name}.lora_B.weight`] = { dtype: 'F32', shape: [l.dOut, 4], data: B };
    }
    await writeFile(path.join(d, 'adapter_model.safetensors'), encodeSafetensors(tensors));
    const r = registry();
    const before = snapshot(r);
    const err = await refused(r.register(adapterId('nonfinite'), d), 400, 'adapter_not_finite');
    assert.ok(err.message.includes(`base_model.model.${layer.name}.lora_B.weight`), err.message);
    assert.equal(snapshot(r), before);
  }
});

test('paths are confined: symlinks out of the adapter dir and admin paths outside the roots are refused', async () => {
  const r = registry();
  await r.scan();
  const before = snapshot(r);
  const dirLink = await refused(r.binding('linked-dir'), 400, 'adapter_path_not_allowed');
  assert.ok(!dirLink.message.includes(outside), 'a request error does not show server paths');
  await refused(r.binding('linked-file'), 400, 'adapter_path_not_allowed');
  const admin = await refused(r.register(adapterId('evil'), path.join(outside, 'elsewhere')), 400, 'adapter_path_not_allowed');
  assert.match(admin.message, /PATCHBAY_ADAPTER_ROOTS/);
  await refused(r.register(adapterId('evil'), path.join(roots, '..', path.basename(outside), 'elsewhere')), 400, 'adapter_path_not_allowed');
  const viaLink = await refused(r.register(adapterId('evil'), path.join(roots, 'escape')), 400, 'adapter_path_not_allowed');
  assert.match(viaLink.message, /resolves to/);
  await refused(r.register(adapterId('evil'), '/etc'), 400, 'adapter_path_not_allowed');
  assert.equal(r.has('evil'), false);
  assert.equal(JSON.stringify(r.list()), JSON.stringify(JSON.parse(before).list), 'nothing registered or changed');
  // Inside the roots is fine.
  await r.register(adapterId('ok'), path.join(roots, 'p1'));
  assert.equal(r.has('ok'), true);
});

test('failed loads are answered from memory for the TTL, then read again', async () => {
  let now = 1_000;
  const loads: LoadEvent[] = [];
  const r = registry({ failureTtlMs: 5_000, now: () => now, onLoad: (e) => loads.push(e) });
  const first = await refused(r.binding('broken'), 400, 'invalid_safetensors');
  const second = await refused(r.binding('broken'), 400, 'invalid_safetensors');
  assert.equal(second.message, first.message);
  assert.equal(loads.length, 1, 'the second request did not touch the disk');
  now += 5_001;
  await refused(r.binding('broken'), 400, 'invalid_safetensors');
  assert.equal(loads.length, 2, 'after the TTL the directory is read again');
});

test('an adapter larger than the cache budget is refused clearly, and not re-read on every request', async () => {
  const loads: LoadEvent[] = [];
  const r = registry({ maxBytes: Math.floor(one / 2), onLoad: (e) => loads.push(e) });
  const err = await refused(r.binding('alpha'), 400, 'adapter_too_large');
  assert.match(err.message, /PATCHBAY_CACHE_BYTES/);
  await refused(r.binding('alpha'), 400, 'adapter_too_large');
  assert.equal(loads.length, 1);
  assert.equal(r.stats().residentBytes, 0);
  await refused(r.register(adapterId('big'), path.join(roots, 'p1')), 400, 'adapter_too_large');
  assert.equal(r.has('big'), false);
});

test('persistence: a failed write undoes the registration; restore validates each record, keeps failures dormant until deleted', async () => {
  const r = registry();
  const before = snapshot(r);
  r.onAdaptersChanged = () => Promise.reject(new Error('disk full'));
  await assert.rejects(r.register(adapterId('p1'), path.join(roots, 'p1')), /disk full/);
  assert.equal(snapshot(r), before, 'nothing registered when the store could not be written');
  assert.equal(r.has('p1'), false);

  const writes: string[][] = [];
  const fresh = registry();
  const { restored, skipped } = await fresh.restoreAdapters([
    { id: 'p1', path: path.join(roots, 'p1'), pinned: true, created: 1_700_000_000 },
    { id: 'evil', path: path.join(outside, 'elsewhere'), pinned: false, created: 1_700_000_001 },
    { id: 'gone', path: path.join(roots, 'nope'), pinned: false, created: 1_700_000_002 },
  ]);
  assert.deepEqual(restored, ['p1']);
  assert.deepEqual(skipped.map((s) => s.id), ['evil', 'gone']);
  assert.match(skipped[0]!.reason, /outside the directories/);
  assert.match(skipped[1]!.reason, /not a directory/);
  assert.deepEqual([fresh.get('p1')?.created, fresh.get('p1')?.pinned, fresh.isPinnedResident('p1')], [1_700_000_000, true, true], 'restored as registered');
  assert.equal(fresh.has('evil'), false);
  fresh.onAdaptersChanged = async (records) => void writes.push(records.map((x) => x.id));
  assert.deepEqual(fresh.adapterRecords().map((x) => x.id), ['p1', 'evil', 'gone'], 'dormant records stay in the store');
  const deleted = await fresh.unregister('gone');
  assert.equal(deleted.id, 'gone');
  assert.deepEqual(writes.at(-1), ['p1', 'evil']);
  await fresh.register(adapterId('gone'), path.join(roots, 'p2'));
  assert.deepEqual(writes.at(-1), ['p1', 'gone', 'evil'], 'a new registration of the id is a live record');
  await fresh.unregister('p1');
  assert.deepEqual(writes.at(-1), ['gone', 'evil']);
});
