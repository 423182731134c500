/**
 * GeneratorRegistry on real ONNX generators and the real tiny-gpt2 graph: scanning, the factor cache keyed
 * by (generator registration, condition hash) in the shared byte-bounded cache, single-flight generation,
 * and re-registration never serving the previous registration's factors.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { AttachTarget } from '../../src/adapters/index.ts';
import { adapterId } from '../../src/registry/adapter-id.ts';
import { GeneratorRegistry, type GenerateEvent } from '../../src/registry/generator-registry.ts';
import { ResidentCache } from '../../src/registry/resident-cache.ts';
import { writeSyntheticGenerator } from '../helpers/synthetic-generator.ts';
import { realTarget, removeTempDirs, tempDir } from './fixtures.ts';

const MODULES = ['transformer.h.0.attn.c_attn'];
let target: AttachTarget;
let dir: string;
let other: string;
/** Bytes of one generated binding: rank 2 on c_attn (256 → 768), float32 a and b. */
const ONE = (256 * 2 + 2 * 768) * 4;

before(async () => {
  target = await realTarget('tiny-gpt2');
  dir = await tempDir('patchbay-genreg-');
  await writeSyntheticGenerator(path.join(dir, 'syn'), target, { modules: MODULES, rank: 2, conditionDim: 3, seed: 4 });
  other = await writeSyntheticGenerator(path.join(await tempDir(), 'other'), target, { modules: MODULES, rank: 2, conditionDim: 3, seed: 5 });
});
after(removeTempDirs);

function registry(maxBytes: number, events: GenerateEvent[] = []) {
  const cache = new ResidentCache({ maxBytes });
  return { cache, reg: new GeneratorRegistry({ adapterDir: dir, adapterRoots: [tmpdir()], target, cache, context: {}, onGenerate: (e) => events.push(e) }) };
}

test('scan finds generator directories without loading them; factors are cached per condition within the byte budget', async () => {
  const events: GenerateEvent[] = [];
  const { cache, reg } = registry(2 * ONE, events);
  assert.deepEqual((await reg.scan()).map((e) => [e.id, e.manifest?.condition_dim]), [['syn', 3]]);
  assert.equal(reg.isLoaded('syn'), false);
  const a = await reg.factors('syn', [0.1, 0.2, 0.3]);
  const again = await reg.factors('syn', [0.1, 0.2, 0.3]);
  assert.equal(again.binding, a.binding, 'same condition: the cached binding');
  assert.deepEqual([a.hit, again.hit], [false, true]);
  assert.equal(cache.stats().residentBytes, ONE);
  await reg.factors('syn', [0.3, 0.2, 0.1]);
  await reg.factors('syn', [0.5, 0.5, 0.5]);
  assert.equal(cache.stats().evictions, 1, 'the third condition evicted the least recently used one');
  assert.ok(cache.stats().residentBytes <= 2 * ONE);
  assert.deepEqual(events.map((e) => e.hit), [false, true, false, false]);
  assert.ok(events.every((e) => e.id === 'syn' && /^[0-9a-f]{16}$/.test(e.hash)));
  await reg.close();
});

test('concurrent requests for one condition run the generator once', async () => {
  const events: GenerateEvent[] = [];
  const { cache, reg } = registry(1 << 20, events);
  await reg.scan();
  const all = await Promise.all(Array.from({ length: 5 }, () => reg.factors('syn', [1, 1, 1])));
  assert.ok(all.every((r) => r.binding === all[0]!.binding));
  assert.equal(cache.stats().loads, 1);
  await reg.close();
});

test('a re-registered id never serves the factors of its previous registration', async () => {
  const { reg } = registry(1 << 20);
  const id = adapterId('g');
  await reg.register(id, path.join(dir, 'syn'));
  const first = await reg.factors('g', [1, 2, 3]);
  await reg.unregister('g');
  await reg.register(id, other);
  const now = await reg.factors('g', [1, 2, 3]);
  assert.equal(now.hit, false, 'a new registration starts with no factors');
  assert.notEqual(now.binding.key, first.binding.key);
  assert.notDeepEqual(now.binding.layers.get(MODULES[0]!)!.a, first.binding.layers.get(MODULES[0]!)!.a, 'the new generator\'s factors');
  await reg.close();
});
