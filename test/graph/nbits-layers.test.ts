/**
 * The graph rewrite on a quantized base: MatMulNBits layers are linear layers (K, N from attributes), the
 * GGUF import's offset-correction MatMuls are not, and per-row delta branches on a 4-bit layer give
 * y = x·W_dequantᵀ + (x·A_i)·B_i per row (W_dequant from the `gguf` package, test/fixtures/nbits).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, findLinearLayers, withNBitsAccuracy } from '../../src/runtime/graph/index.ts';
import { FLOAT, decodeModel, encodeModel, onnx, tensorValueInfo } from '../../src/runtime/graph/onnx.ts';
import { packNBits, type NBitsSourceType } from '../../src/import/quant/nbits-pack.ts';
import { MS_DOMAIN, NBitsEmitter } from '../../src/import/quant/nbits-nodes.ts';
import { randomArray, rng } from './tiny-model.ts';

interface Fixture { K: number; N: number; raw: string; dequant: string }
const FIX = JSON.parse(readFileSync(new URL('../fixtures/nbits/blocks.json', import.meta.url), 'utf8')) as Record<string, Fixture>;
const K = 256;
const N = 4;

// Three layers reading the same x (they share one blocksum): two with offsets, one symmetric.
const LAYERS: [string, NBitsSourceType][] = [
  ['model.layers.0.self_attn.q_proj', 'Q4_0'],
  ['model.layers.0.mlp.gate_proj', 'Q4_K'],
  ['model.layers.0.mlp.up_proj', 'Q4_1'],
];

function dequant(type: NBitsSourceType): Float32Array {
  const b = Buffer.from(FIX[type]!.dequant, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function quantizedModel(): Uint8Array {
  const e = new NBitsEmitter();
  for (const [name, type] of LAYERS) {
    const w = packNBits(type, new Uint8Array(Buffer.from(FIX[type]!.raw, 'base64')), K, N, 4);
    e.linear({ scope: '/' + name.replace(/\./g, '/').replace(/\/(\d+)\//, '.$1/'), prefix: name, input: 'x', output: name, weight: w, accuracyLevel: 0 });
  }
  const graph = {
    name: 'q4',
    input: [tensorValueInfo('x', FLOAT, ['batch_size', 'seq', K])],
    output: LAYERS.map(([name]) => tensorValueInfo(name, FLOAT, ['batch_size', 'seq', N])),
    initializer: e.initializers,
    node: e.nodes,
  };
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }], graph }));
}

test('findLinearLayers: MatMulNBits layers with K/N from attributes; offset corrections are not layers', () => {
  const model = decodeModel(quantizedModel());
  // Two offset corrections and one blocksum (a product with a 0/1 indicator, shared by both layers reading x), all
  // FusedMatMul with 2-D constant operands: ORT pre-packs them, and the rewrite must not take them for layers.
  assert.equal(model.graph!.node!.filter((n) => n.opType === 'FusedMatMul').length, 3, 'two correction products and one blocksum product exist');
  const layers = findLinearLayers(model);
  assert.deepEqual(
    layers.map((l) => [l.name, l.op, l.dIn, l.dOut, l.inputTensor, l.outputTensor]),
    [
      ['model.layers.0.self_attn.q_proj', 'MatMulNBits', K, N, 'x', 'model.layers.0.self_attn.q_proj'],
      ['model.layers.0.mlp.gate_proj', 'MatMulNBits', K, N, 'x', 'model.layers.0.mlp.gate_proj/nbits'],
      ['model.layers.0.mlp.up_proj', 'MatMulNBits', K, N, 'x', 'model.layers.0.mlp.up_proj/nbits'],
    ],
  );
});

test('delta branches on 4-bit layers: per-row y = x·W_dequantᵀ + (x·A_i)·B_i, rows with different ranks', async () => {
  const rewrite = addDeltaBranches(quantizedModel(), 'all-linear');
  assert.deepEqual(rewrite.layers.map((l) => [l.name, l.dIn, l.dOut]), LAYERS.map(([n]) => [n, K, N]));
  const batch = 2;
  const seq = 3;
  const r = rng(3);
  const x = randomArray(batch * seq * K, r, 2);
  const rank = 2;
  // row 0 carries factors on every layer, row 1 none (zeros): the rewritten graph must leave row 1 = base.
  const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [batch, seq, K]) };
  const factors = new Map<string, { a: Float32Array; b: Float32Array }>();
  for (const l of rewrite.layers) {
    const a = new Float32Array(batch * K * rank);
    const b = new Float32Array(batch * rank * N);
    a.set(randomArray(K * rank, r, 0.1));
    b.set(randomArray(rank * N, r, 0.5));
    factors.set(l.name, { a, b });
    feeds[l.aInput] = new ort.Tensor('float32', a, [batch, K, rank]);
    feeds[l.bInput] = new ort.Tensor('float32', b, [batch, rank, N]);
  }
  const s = await ort.InferenceSession.create(rewrite.bytes, { intraOpNumThreads: 1 });
  const out = await s.run(feeds);
  await s.release();
  for (const [name, type] of LAYERS) {
    const w = dequant(type);
    const { a, b } = factors.get(name)!;
    const got = out[name]!.data as Float32Array;
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < batch; i++) for (let t = 0; t < seq; t++) {
      const xr = x.subarray((i * seq + t) * K, (i * seq + t + 1) * K);
      for (let n = 0; n < N; n++) {
        let y = 0;
        for (let k = 0; k < K; k++) y += xr[k]! * w[n * K + k]!;
        for (let j = 0; j < rank; j++) {
          let xa = 0;
          for (let k = 0; k < K; k++) xa += xr[k]! * a[(i * K + k) * rank + j]!;
          y += xa * b[(i * rank + j) * N + n]!;
        }
        worst = Math.max(worst, Math.abs(got[(i * seq + t) * N + n]! - y));
        scale = Math.max(scale, Math.abs(y));
      }
    }
    assert.ok(worst / scale <= 1e-5, `${name} (${type}): relative error ${worst / scale}`);
  }
});

test('withNBitsAccuracy rewrites accuracy_level on every MatMulNBits node and leaves other graphs alone', () => {
  const level = (bytes: Uint8Array) =>
    decodeModel(bytes).graph!.node!.filter((n) => n.opType === 'MatMulNBits').map((n) => n.attribute!.find((a) => a.name === 'accuracy_level')?.i);
  const q = quantizedModel();
  assert.deepEqual(level(q).map(Number), [0, 0, 0]);
  assert.deepEqual(level(withNBitsAccuracy(q, 4)).map(Number), [4, 4, 4]);
  const plain = encodeModel(onnx.ModelProto.create({ irVersion: 8, graph: { name: 'empty', node: [] } }));
  assert.equal(withNBitsAccuracy(plain, 4), plain);
});
