/**
 * Patchbay's logits with the trained RWS patches (adapters/rws-typos, adapters/rws-lower) applied match
 * PyTorch (tools/rws/eval_patches.py → test/fixtures/rws/reference.json) within 1e-4 — applied globally
 * (a base version) and per request (dense factors on the delta path), both prompts in one padded batch.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import type { PatchManager } from '../../src/patches/patch-manager.ts';
import { createLogger } from '../../src/server/logging.ts';
import { createPatchManager } from '../../src/server/patch-serving.ts';

interface Fixture {
  prompts: number[][];
  configs: { name: string; patches: { id: string; alpha: number }[]; logits: number[][] }[];
}
const fx = JSON.parse(readFileSync('test/fixtures/rws/reference.json', 'utf8')) as Fixture;
const TOL = 1e-4;
let rt: Runtime;
let patches: PatchManager;

before(async () => {
  rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 4, maxQueue: 4, threads: 1 });
  patches = await createPatchManager({ versions: rt.versions, baseNames: ['tiny-gpt2'], deltaLayers: rt.deltaLayers, adapterDir: 'adapters', logger: createLogger('silent') });
});
after(() => rt.close());

function maxDiff(got: Float32Array, want: number[]): number {
  assert.equal(got.length, want.length);
  let m = 0;
  for (let i = 0; i < got.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!));
  return m;
}

test('the shipped patches are registered and not applied', () => {
  assert.deepEqual(patches.list().map((p) => p.id).sort(), ['rws-lower', 'rws-typos']);
  assert.deepEqual(patches.activePatches(), []);
  assert.equal(rt.versions.current().id, 0);
});

for (const config of fx.configs) {
  test(`global ${config.name}: logits match PyTorch within ${TOL}`, async () => {
    for (const p of config.patches) await patches.apply(p.id, p.alpha);
    const { engine } = rt.versions.current();
    const out = await engine.forward(BatchKv.empty(engine.shape, fx.prompts.length), fx.prompts);
    out.logits.forEach((l, i) => {
      const d = maxDiff(l, config.logits[i]!);
      assert.ok(d <= TOL, `prompt ${i}: max |Δ| = ${d}`);
    });
    for (const p of config.patches) await patches.remove(p.id);
    assert.deepEqual(rt.versions.current().changed, []);
  });

  test(`per request ${config.name}: logits match PyTorch within ${TOL}, next to an unpatched row`, async () => {
    const binding = patches.binding(config.patches);
    const { engine } = rt.versions.current();
    const rows = [...fx.prompts, fx.prompts[0]!];
    const feeds = deltaTensors(rt.deltaLayers, [binding, binding, undefined]);
    const out = await engine.forward(BatchKv.empty(engine.shape, rows.length), rows, feeds);
    fx.prompts.forEach((_, i) => {
      const d = maxDiff(out.logits[i]!, config.logits[i]!);
      assert.ok(d <= TOL, `prompt ${i}: max |Δ| = ${d}`);
    });
    const base = await engine.forward(BatchKv.empty(engine.shape, 1), [fx.prompts[0]!]);
    assert.ok(maxDiff(out.logits[2]!, Array.from(base.logits[0]!)) <= 1e-5, 'the unpatched row is the base');
    assert.ok(maxDiff(out.logits[0]!, Array.from(base.logits[0]!)) > 1e-3, 'the patch changes the logits');
  });
}
