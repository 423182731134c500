/**
 * At accuracy_level 4 the q4 import's split 8-bit weights (two exact 4-bit planes) run as one 8-bit MatMulNBits
 * again (graph/nbits-merge-planes.ts). The fixture's splits: Q8_0 (o_proj, gate_proj) and Q6_K (down_proj, v_proj,
 * and the tied head/embedding table).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { encodeModel, floatsOf, intAttr, type ModelProto } from '../../src/runtime/graph/onnx.ts';
import { setNBitsAccuracy } from '../../src/runtime/graph/nbits-accuracy.ts';
import { dequantizeNBitsLayers } from '../../src/runtime/graph/nbits-dequantize.ts';
import { GGUF_FIXTURE } from './fixture.ts';
import { runSteps, sliced, worst } from './q4-steps.ts';

let work: string;
let q4: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-gguf-merge-'));
  q4 = join(work, 'q4');
  await importGguf(GGUF_FIXTURE, q4, 'q4', { accuracyLevel: 0 });
});
after(async () => rm(work, { recursive: true, force: true }));

const nbits = (m: ModelProto) => m.graph!.node!.filter((n) => n.opType === 'MatMulNBits');
const splitScopes = (m: ModelProto) => nbits(m).filter((n) => n.name!.includes('/nbits_lo/')).map((n) => n.name!.replace('/nbits_lo/MatMulNBits', ''));
/** Level 4 on every node, the planes left as imported (what the runtime ran before the merge). */
function level4Unmerged(m: ModelProto): ModelProto {
  for (const n of nbits(m)) n.attribute = [...n.attribute!.filter((a) => a.name !== 'accuracy_level'), { name: 'accuracy_level', type: 2, i: 4 }];
  return m;
}
/** Every layer's dequantized float32 weight, by layer scope. */
function denseWeights(m: ModelProto): Map<string, Float32Array> {
  dequantizeNBitsLayers(m);
  return new Map(m.graph!.initializer!.filter((t) => t.name!.endsWith('.dequantized.weight')).map((t) => [t.name!, floatsOf(t)!]));
}

test('level 4 merges every split layer into one 8-bit node holding the same weights', async () => {
  const planes = await sliced(q4);
  const scopes = splitScopes(planes);
  assert.ok(scopes.includes('/lm_head') && scopes.length >= 2, `split layers: ${scopes.join(', ')}`);

  const merged = await sliced(q4);
  setNBitsAccuracy(merged, 4);
  assert.deepEqual(splitScopes(merged), []);
  for (const s of scopes) {
    const node = merged.graph!.node!.find((n) => n.name === `${s}/MatMulNBits`)!;
    assert.equal(intAttr(node, 'bits', 0), 8, s);
    assert.equal(node.input!.length, 3, `${s}: default zero point 128`);
  }
  // The tied embedding's lookup reads the merged table too (one 8-bit GatherBlockQuantized): the table is stored
  // once, the planes and the lookup's offset table are gone, and nothing is left unread.
  const lookups = merged.graph!.node!.filter((n) => n.opType === 'GatherBlockQuantized');
  assert.equal(lookups.length, 1);
  assert.equal(intAttr(lookups[0]!, 'bits', 0), 8);
  assert.equal(lookups[0]!.input![0], merged.graph!.node!.find((n) => n.name === '/lm_head/MatMulNBits')!.input![1]);
  const inits = new Set(merged.graph!.initializer!.map((t) => t.name));
  assert.ok(!inits.has('model.embed_tokens.nbits.B') && !inits.has('model.embed_tokens.nbits_lo.B') && !inits.has('model.embed_tokens.nbits.offsets_gather'));
  const read = new Set(merged.graph!.node!.flatMap((n) => n.input ?? []));
  assert.deepEqual([...inits].filter((n) => !read.has(n!)), []);

  // Same values: W = s·(u − 128) against 16s·(hi − 8) + s·lo, both dequantized in float32.
  const want = denseWeights(await sliced(q4));
  const got = denseWeights(merged);
  assert.equal(got.size, want.size);
  for (const [name, w] of want) {
    const g = got.get(name)!;
    let worstRel = 0;
    for (let i = 0; i < w.length; i++) worstRel = Math.max(worstRel, Math.abs(g[i]! - w[i]!) / Math.max(1e-3, Math.abs(w[i]!)));
    assert.ok(worstRel <= 1e-6, `${name}: worst relative difference ${worstRel}`);
  }
});

test('level 0 and the "auto" level keep the planes', async () => {
  for (const level of [0, 'auto'] as const) {
    const m = await sliced(q4);
    const before = splitScopes(m).length;
    setNBitsAccuracy(m, level);
    assert.equal(splitScopes(m).length, before, String(level));
  }
});

test('the merged graph at level 4 gives the logits of the planes at level 4, within int8 rounding', async () => {
  const exact = await runSteps(q4, encodeModel(await sliced(q4)));
  const planes = await runSteps(q4, encodeModel(level4Unmerged(await sliced(q4))));
  const merged = await sliced(q4);
  setNBitsAccuracy(merged, 4);
  const one = await runSteps(q4, encodeModel(merged));
  // Both quantize the activations to int8 per block; they differ from the exact graph by that rounding, and
  // from each other by less (the same weights, one kernel call instead of two).
  const planesVsExact = worst(planes.out, exact.out);
  const mergedVsExact = worst(one.out, exact.out);
  const mergedVsPlanes = worst(one.out, planes.out);
  // Measured: 0.133 against logits up to 8.3 (planes), 0.135 (merged), 0.017 between the two.
  const scale = Math.max(...exact.out.map((r) => Math.max(...r.map(Math.abs))));
  assert.ok(planesVsExact > 0 && planesVsExact < 0.05 * scale, `planes at level 4 vs level 0: ${planesVsExact} (logits up to ${scale})`);
  assert.ok(mergedVsExact <= 1.5 * planesVsExact, `merged vs level 0: ${mergedVsExact} (planes: ${planesVsExact})`);
  assert.ok(mergedVsPlanes <= planesVsExact, `merged vs planes: ${mergedVsPlanes}`);
});
