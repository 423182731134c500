import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, buildDeltaFeeds, findLinearLayers, modulePath } from '../../src/runtime/graph/index.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import type { DeltaBinding, LayerFactors } from '../../src/runtime/types.ts';
import { randomArray, rng, tinyForward, tinyModel, tinyWeights, type RowFactors } from './tiny-model.ts';

const ALL = [
  'transformer.h.0.attn.c_attn',
  'transformer.h.0.attn.c_proj',
  'transformer.h.0.mlp.c_fc',
  'transformer.h.0.mlp.c_proj',
  'lm_head',
];

function close(actual: Float32Array, expected: Float32Array, tol = 1e-4) {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  assert.ok(worst <= tol, `max abs diff ${worst} > ${tol}`);
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>) {
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const out = await s.run(feeds);
    return { logits: out.logits!.data as Float32Array, hidden: out.hidden!.data as Float32Array };
  } finally {
    await s.release();
  }
}

test('modulePath maps scoped node names, falls back to weight names', () => {
  assert.equal(modulePath('/transformer/h.0/attn/c_attn/MatMul', 'onnx::MatMul_1'), 'transformer.h.0.attn.c_attn');
  assert.equal(modulePath('/model/layers.3/self_attn/q_proj/MatMul_1', 'x'), 'model.layers.3.self_attn.q_proj');
  assert.equal(modulePath('/lm_head/MatMul', 'onnx::MatMul_9'), 'lm_head');
  assert.equal(modulePath('node_MatMul_12', 'model.layers.0.mlp.up_proj.weight'), 'model.layers.0.mlp.up_proj');
  assert.equal(modulePath('MatMul_7', 'val_3'), 'MatMul_7');
});

test('findLinearLayers finds MatMul(+bias), Gemm(transB) and lm_head with shapes and tensors', () => {
  const layers = findLinearLayers(decodeModel(tinyModel()));
  assert.deepEqual(
    layers.map((l) => [l.name, l.op, l.dIn, l.dOut, l.inputTensor, l.outputTensor, l.biasName ?? null]),
    [
      ['transformer.h.0.attn.c_attn', 'MatMul', 8, 12, 'x', 'h1', 'b1'],
      ['transformer.h.0.attn.c_proj', 'MatMul', 12, 8, 'h2', 'hidden', null],
      ['transformer.h.0.mlp.c_fc', 'Gemm', 8, 10, 'h4', 'h5', 'b3'],
      ['transformer.h.0.mlp.c_proj', 'MatMul', 10, 8, 'h6', 'h7', 'b4'],
      ['lm_head', 'MatMul', 8, 6, 'h7', 'logits', null],
    ],
  );
});

test('selection: attention, all-linear (no lm_head), regex list (may take lm_head)', () => {
  const names = (sel: Parameters<typeof addDeltaBranches>[1]) => addDeltaBranches(tinyModel(), sel).layers.map((l) => l.name);
  assert.deepEqual(names('attention'), ALL.slice(0, 2));
  assert.deepEqual(names('all-linear'), ALL.slice(0, 4));
  assert.deepEqual(names(['.*c_proj', 'lm_head']), [ALL[1], ALL[3], ALL[4]]);
  const r = addDeltaBranches(tinyModel(), 'attention');
  assert.equal(r.batchDim, 'batch_size');
  assert.equal(r.linearLayers.length, 5);
  assert.deepEqual(r.layers[0], { name: ALL[0], dIn: 8, dOut: 12, aInput: `delta.${ALL[0]}.a`, bInput: `delta.${ALL[0]}.b` });
});

const B = 3;
const S = 4;
const x = randomArray(B * S * 8, rng(7));
const dims: Record<string, [number, number]> = {
  [ALL[0]!]: [8, 12], [ALL[1]!]: [12, 8], [ALL[2]!]: [8, 10], [ALL[3]!]: [10, 8], [ALL[4]!]: [8, 6],
};

function tensorFeeds(feeds: Map<string, { data: Float32Array; dims: number[] }>): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [B, S, 8]) };
  for (const [k, v] of feeds) out[k] = new ort.Tensor('float32', v.data, v.dims);
  return out;
}

test('rewritten graph with rank 0 everywhere equals the original model', async () => {
  const w = tinyWeights();
  const base = await run(tinyModel(w), { x: new ort.Tensor('float32', x, [B, S, 8]) });
  const rewritten = addDeltaBranches(tinyModel(w), ['.*']);
  const feeds = buildDeltaFeeds(rewritten.layers, [undefined, undefined, undefined]);
  const out = await run(rewritten.bytes, tensorFeeds(feeds));
  assert.deepEqual(out.logits, base.logits);
  assert.deepEqual(out.hidden, base.hidden);
  const ref = tinyForward(w, x, B, S);
  close(base.logits, ref.logits, 1e-5);
});

test('per-row random factors (mixed ranks, a base row) give y + (x·A)·B on every layer', async () => {
  const w = tinyWeights(3);
  const rewritten = addDeltaBranches(tinyModel(w), ['.*']);
  const r = rng(11);
  const factors = (name: string, rank: number): LayerFactors => {
    const [dIn, dOut] = dims[name]!;
    return { rank, a: randomArray(dIn * rank, r, 0.5), b: randomArray(rank * dOut, r, 0.5) };
  };
  // row 0: every layer rank 2; row 1: base; row 2: two layers, rank 5 and 1.
  const row0: DeltaBinding = { key: 'r0', layers: new Map(ALL.map((n) => [n, factors(n, 2)])) };
  const row2: DeltaBinding = { key: 'r2', layers: new Map([[ALL[1]!, factors(ALL[1]!, 5)], [ALL[2]!, factors(ALL[2]!, 1)]]) };
  const rows = [row0, undefined, row2];
  const out = await run(rewritten.bytes, tensorFeeds(buildDeltaFeeds(rewritten.layers, rows)));
  const deltas = new Map<string, RowFactors[]>(ALL.map((n) => [n, rows.map((row) => row?.layers.get(n))]));
  const ref = tinyForward(w, x, B, S, deltas);
  close(out.logits, ref.logits);
  close(out.hidden, ref.hidden);
  // Same rows alone: each row's logits do not depend on its batch neighbours.
  for (let i = 0; i < B; i++) {
    const one = await run(rewritten.bytes, {
      ...Object.fromEntries(
        [...buildDeltaFeeds(rewritten.layers, [rows[i]])].map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.dims)]),
      ),
      x: new ort.Tensor('float32', x.subarray(i * S * 8, (i + 1) * S * 8), [1, S, 8]),
    });
    close(one.logits, out.logits.subarray(i * S * 6, (i + 1) * S * 6), 1e-5);
  }
});

test('buildDeltaFeeds rejects factors for a layer without a branch', () => {
  const rewritten = addDeltaBranches(tinyModel(), 'attention');
  const bad: DeltaBinding = { key: 'x', layers: new Map([['lm_head', { rank: 1, a: new Float32Array(8), b: new Float32Array(6) }]]) };
  assert.throws(() => buildDeltaFeeds(rewritten.layers, [bad]), /lm_head, which has no delta branch/);
});

test('r = 0 also holds on the Gemm path with transA (x arrives as [d_in, batch·seq])', async () => {
  // y = Gemm(xT, W, transA=1) where xT = Transpose(x2d): the branch must transpose back before x·A.
  const { FLOAT, encodeModel, node, onnx, tensorValueInfo } = await import('../../src/runtime/graph/onnx.ts');
  const r = rng(2);
  const W = randomArray(4 * 3, r);
  const bytes = encodeModel(onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      input: [tensorValueInfo('x', FLOAT, ['batch_size', 4])],
      output: [tensorValueInfo('y', FLOAT, ['batch_size', 3])],
      initializer: [{ name: 'W', dataType: FLOAT, dims: [4, 3], floatData: [...W] }],
      node: [
        node('Transpose', '/t', ['x'], ['xT'], [{ name: 'perm', type: 7, ints: [1, 0] }]),
        node('Gemm', '/proj/Gemm', ['xT', 'W'], ['y'], [{ name: 'transA', type: 2, i: 1 }]),
      ],
    },
  }));
  const rw = addDeltaBranches(bytes, ['proj']);
  assert.equal(rw.usesExternalData, false);
  assert.deepEqual(rw.layers.map((l) => [l.name, l.dIn, l.dOut]), [['proj', 4, 3]]);
  const x = randomArray(2 * 4, r);
  const a = randomArray(2 * 4 * 2, r);
  const b = randomArray(2 * 2 * 3, r);
  const s = await ort.InferenceSession.create(rw.bytes);
  const out = (await s.run({
    x: new ort.Tensor('float32', x, [2, 4]),
    'delta.proj.a': new ort.Tensor('float32', a, [2, 4, 2]),
    'delta.proj.b': new ort.Tensor('float32', b, [2, 2, 3]),
  })).y!.data as Float32Array;
  for (let i = 0; i < 2; i++) for (let o = 0; o < 3; o++) {
    let want = 0;
    for (let k = 0; k < 4; k++) want += x[i * 4 + k]! * W[k * 3 + o]!;
    for (let j = 0; j < 2; j++) {
      let xa = 0;
      for (let k = 0; k < 4; k++) xa += x[i * 4 + k]! * a[i * 8 + k * 2 + j]!;
      want += xa * b[i * 6 + j * 3 + o]!;
    }
    assert.ok(Math.abs(out[i * 3 + o]! - want) < 1e-5, `row ${i} col ${o}: ${out[i * 3 + o]} vs ${want}`);
  }
  await s.release();
});
