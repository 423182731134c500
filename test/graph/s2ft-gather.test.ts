/**
 * bench/s2ft-gather compares two graph representations of S²FT; both must be exact. Each is checked
 * against a dense float64 reference (y + x·ΔWᵀ with ΔW built explicitly) on tiny-gpt2 shapes, with a
 * mixed batch (two adapters of different k, one row without) at prefill and decode lengths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import {
  compileGather,
  compileSelection,
  denseReference,
  gatherFeeds,
  linearModel,
  randomLinear,
  randomS2ft,
  rng,
  selectionFeeds,
  type Linear,
  type S2ftRow,
  type Variant,
} from '../../bench/lib/s2ft-gather.ts';

async function run(l: Linear, variant: Variant, x: Float32Array, seq: number, rows: readonly (S2ftRow | undefined)[]) {
  const s = await ort.InferenceSession.create(linearModel(l, variant), { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [rows.length, seq, l.dIn]) };
    if (variant === 'selection') Object.assign(feeds, selectionFeeds(l, rows.map((r) => r && compileSelection(l, r))));
    if (variant === 'gather') Object.assign(feeds, gatherFeeds(l, rows.map((r) => r && compileGather(l, r))));
    return (await s.run(feeds)).y!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function assertClose(actual: Float32Array, expected: Float64Array, tol: number, what: string) {
  assert.equal(actual.length, expected.length, what);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  assert.ok(worst <= tol, `${what}: max abs diff ${worst} > ${tol}`);
}

for (const [axis, dIn, dOut] of [['output', 256, 1024], ['input', 256, 256]] as const) {
  test(`S²FT ${axis} side (${dIn}→${dOut}): selection and gather match the dense reference`, async () => {
    const l = randomLinear(axis, dIn, dOut, 7);
    const rows = [randomS2ft(l, 32, 11), undefined, randomS2ft(l, 80, 12)];
    for (const seq of [5, 1]) {
      const r = rng(seq);
      const x = Float32Array.from({ length: rows.length * seq * dIn }, () => r());
      const ref = denseReference(l, x, rows.length, seq, rows);
      for (const variant of ['selection', 'gather'] as const) {
        assertClose(await run(l, variant, x, seq, rows), ref, 1e-5, `${variant} seq=${seq}`);
      }
      // The delta is not negligible, so the check above would catch a dropped branch.
      const base = denseReference(l, x, rows.length, seq, rows.map(() => undefined));
      assert.ok(ref.some((v, i) => Math.abs(v - base[i]!) > 1e-2));
    }
  });

  test(`S²FT ${axis} side: a batch without any S²FT row (K = 0) gives the base output`, async () => {
    const l = randomLinear(axis, dIn, dOut, 8);
    const r = rng(3);
    const x = Float32Array.from({ length: 2 * dIn }, () => r());
    const ref = denseReference(l, x, 2, 1, [undefined, undefined]);
    for (const variant of ['base', 'selection', 'gather'] as const) {
      assertClose(await run(l, variant, x, 1, [undefined, undefined]), ref, 1e-5, `${variant} K=0`);
    }
  });
}
