/**
 * Registry generations under controlled interleavings: the loader is the real one, wrapped so a test decides
 * when a given load may finish. Each scenario is the race the review found; with ids-only keys the first
 * served and cached the stale combination, the second re-inserted the old directory entry.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadAdapter, type AttachTarget, type LoadedAdapter } from '../../src/adapters/index.ts';
import { adapterId } from '../../src/registry/adapter-id.ts';
import { AdapterRegistry, type RegistryOptions } from '../../src/registry/adapter-registry.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';
import { loraBytes, realTarget, removeTempDirs, tempDir, writeLora } from './fixtures.ts';

const QV = { modules: ['q_proj', 'v_proj'], rank: 4 };
let target: AttachTarget;
let dir: string;
let other: string;

before(async () => {
  target = await realTarget('tiny-llama');
  dir = await tempDir();
  other = await tempDir();
  await writeLora(path.join(dir, 'alpha'), target, { ...QV, seed: 1 });
  await writeLora(path.join(dir, 'beta'), target, { ...QV, seed: 2 });
  await writeLora(path.join(other, 'beta-v2'), target, { ...QV, seed: 7 });
});
after(removeTempDirs);

/** A loader that parks the next load of `id` (after it read the files) until `release()`; others run through. */
function gatedLoader() {
  const gates = new Map<string, { arrive: () => void; open: Promise<void> }>();
  return {
    gate(id: string): { reached: Promise<void>; release: () => void } {
      let release!: () => void;
      let arrive!: () => void;
      const open = new Promise<void>((r) => (release = r));
      const reached = new Promise<void>((r) => (arrive = r));
      gates.set(id, { arrive, open });
      return { reached, release };
    },
    loader: async (d: string, t: AttachTarget, id: string): Promise<LoadedAdapter> => {
      const loaded = await loadAdapter(d, t, id);
      const g = gates.get(id);
      if (g) {
        gates.delete(id);
        g.arrive();
        await g.open;
      }
      return loaded;
    },
  };
}

const registry = (opts: Partial<RegistryOptions> = {}) =>
  new AdapterRegistry({ adapterDir: dir, adapterRoots: [tmpdir()], maxBytes: 64 << 20, target, ...opts });

/** x·(a·b) for one fixed x on one layer: a fingerprint of a binding's ΔW. */
function fingerprint(b: DeltaBinding): number[] {
  const [name, f] = [...b.layers].sort(([x], [y]) => (x < y ? -1 : 1))[0]!;
  const dIn = f.a.length / f.rank;
  const dOut = target.layers.get(name)!.dOut;
  const y = new Array<number>(dOut).fill(0);
  for (let j = 0; j < f.rank; j++) {
    let h = 0;
    for (let i = 0; i < dIn; i++) h += Math.sin(i + 1) * f.a[i * f.rank + j]!;
    for (let o = 0; o < dOut; o++) y[o]! += h * f.b[j * dOut + o]!;
  }
  return y;
}

const close = (x: number[], y: number[]) => x.every((v, i) => Math.abs(v - y[i]!) <= 1e-5 * (1 + Math.abs(v)));

test('unregister + re-register while a combination loads: the stale mix is neither served nor cached', async () => {
  // Expected: alpha and the NEW beta, combined by a registry that never saw the race.
  const clean = registry({ adapterDir: other });
  await clean.register(adapterId('alpha'), path.join(dir, 'alpha'));
  await clean.register(adapterId('beta'), path.join(other, 'beta-v2'));
  const want = fingerprint(await clean.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]));
  const old = registry();
  const stale = fingerprint(await old.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]));
  assert.ok(!close(want, stale), 'the two betas must differ for this test to mean anything');

  const g = gatedLoader();
  const r = registry({ loader: g.loader });
  const parked = g.gate('beta');
  const pending = r.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]);
  await parked.reached; // the old beta is loaded and waits to be returned
  await r.unregister('beta');
  await r.register(adapterId('beta'), path.join(other, 'beta-v2'));
  parked.release();
  assert.ok(close(fingerprint(await pending), want), 'the request got the combination with the re-registered beta');
  const again = await r.combination([{ id: 'alpha', weight: 0.5 }, { id: 'beta', weight: 0.5 }]);
  assert.ok(close(fingerprint(again), want), 'the cache holds no stale combination');
  assert.equal(r.get('beta')!.path, path.join(other, 'beta-v2'));
});

test('a directory load finishing after unregister + re-register elsewhere does not re-insert the old entry', async () => {
  const g = gatedLoader();
  const r = registry({ loader: g.loader });
  const parked = g.gate('beta');
  const pending = r.binding('beta'); // discovered under the adapter dir, not listed until loaded
  await parked.reached;
  await r.unregister('beta');
  const fresh = await r.register(adapterId('beta'), path.join(other, 'beta-v2'));
  parked.release();
  const served = await pending;
  const entry = r.get('beta')!;
  assert.deepEqual([entry.source, entry.path, entry.generation], ['admin', path.join(other, 'beta-v2'), fresh.generation]);
  assert.ok(close(fingerprint(served), fingerprint(await r.binding('beta'))), 'the caller got the current registration');
  assert.equal(r.list().filter((e) => e.id === 'beta').length, 1);
});

test('generations: every registration of an id gets a new one', async () => {
  const r = registry();
  await r.scan();
  const first = r.get('alpha')!.generation;
  await r.unregister('alpha');
  const second = (await r.register(adapterId('alpha'), path.join(dir, 'alpha'))).generation;
  await r.unregister('alpha');
  const third = (await r.register(adapterId('alpha'), path.join(dir, 'alpha'))).generation;
  assert.ok(first < second && second < third, `${first} < ${second} < ${third}`);
});

test('an evicted adapter a running sequence still holds is taken back, not loaded twice', async () => {
  const one = loraBytes(target, QV);
  const r = registry({ maxBytes: Math.floor(one * 1.5) });
  const held = await r.binding('alpha'); // what a decoding sequence keeps in its GenerationRequest
  await r.binding('beta'); // evicts alpha
  assert.equal(r.isResident('alpha'), false);
  const loadsBefore = r.stats().loads;
  const again = await r.binding('alpha');
  assert.equal(again, held, 'the same factors object: one copy in memory');
  assert.equal(r.stats().loads, loadsBefore, 'nothing read from disk');
  assert.equal(r.stats().revived, 1);
  assert.equal(r.isResident('alpha'), true);
});
