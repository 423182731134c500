/**
 * GGUF blocks → MatMulNBits, checked against the `gguf` Python package's dequantization
 * (test/fixtures/nbits/blocks.json, tools/make_nbits_fixtures.py) and through ORT itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { NBITS_TYPES, NBitsPackError, packNBits, splitTo4Bit, unpackNBits, type NBitsSourceType } from '../../src/import/quant/nbits-pack.ts';
import { MS_DOMAIN, NBitsEmitter } from '../../src/import/quant/nbits-nodes.ts';
import { FLOAT, INT64, encodeModel, onnx, tensorValueInfo } from '../../src/runtime/graph/onnx.ts';
import { rng, randomArray } from '../graph/tiny-model.ts';

interface Fixture { K: number; N: number; raw: string; dequant: string }
const FIX = JSON.parse(readFileSync(new URL('../fixtures/nbits/blocks.json', import.meta.url), 'utf8')) as Record<string, Fixture>;
const TYPES = Object.keys(NBITS_TYPES) as NBitsSourceType[];

function load(type: NBitsSourceType) {
  const f = FIX[type]!;
  const raw = new Uint8Array(Buffer.from(f.raw, 'base64'));
  const b = Buffer.from(f.dequant, 'base64');
  const ref = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  return { K: f.K, N: f.N, raw, ref };
}

/** max |a − b| / max |b|: the error relative to the tensor's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return worst / scale;
}

test('fixtures cover every packable type', () => assert.deepEqual(Object.keys(FIX).sort(), [...TYPES].sort()));

for (const type of TYPES) {
  test(`${type}: packed operands mean exactly gguf-py's dequantization`, () => {
    const { K, N, raw, ref } = load(type);
    for (const bits of [4, 8] as const) {
      const w = packNBits(type, raw, K, N, bits);
      assert.equal(w.bits, NBITS_TYPES[type].bits === 8 ? 8 : bits);
      assert.equal(w.blockSize, NBITS_TYPES[type].sub);
      assert.equal(w.data.byteLength, (N * K * w.bits) / 8);
      assert.equal(w.offsets !== undefined, NBITS_TYPES[type].hasOffset);
      // Symmetric types are bit-exact; with an offset, w = scale·(q − zp) + offset re-associates d·q + m, so
      // one float32 rounding (≤ 2⁻²³ of the block's magnitude) may differ.
      const tol = NBITS_TYPES[type].hasOffset ? 2 ** -22 : 0;
      const err = relErr(unpackNBits(w), ref);
      assert.ok(err <= tol, `${type} bits=${bits}: relative error ${err} > ${tol}`);
    }
  });
}

test('packNBits rejects a K that is not a whole number of blocks and a wrong byte length', () => {
  const { raw } = load('Q4_K');
  assert.throws(() => packNBits('Q4_K', raw, 128, 8), NBitsPackError); // K not a multiple of 256
  assert.throws(() => packNBits('Q4_K', raw.subarray(1), 256, 4), /expected 576/);
  assert.throws(() => packNBits('Q4_0', new Uint8Array(18), 32, 2), /expected 36/);
});

/** y = x·Wᵀ through ORT: one MatMulNBits layer (and its offset correction) at the given accuracy level. */
async function runLinear(type: NBitsSourceType, bits: 4 | 8, accuracyLevel: 0 | 4, x: Float32Array, rows: number) {
  const { K, N, raw } = load(type);
  const w = packNBits(type, raw, K, N, bits);
  const e = new NBitsEmitter();
  e.linear({ scope: '/model/layers.0/mlp/up_proj', prefix: 'model.layers.0.mlp.up_proj', input: 'x', output: 'y', weight: w, accuracyLevel });
  const graph = {
    name: 'nbits',
    input: [tensorValueInfo('x', FLOAT, [1, rows, K])],
    output: [tensorValueInfo('y', FLOAT, [1, rows, N])],
    initializer: e.initializers,
    node: e.nodes,
  };
  const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }], graph });
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
  try {
    const out = await s.run({ x: new ort.Tensor('float32', x, [1, rows, K]) });
    return out.y!.data as Float32Array;
  } finally {
    await s.release();
  }
}

function referenceMatmul(x: Float32Array, rows: number, ref: Float32Array, K: number, N: number): Float64Array {
  const y = new Float64Array(rows * N);
  for (let t = 0; t < rows; t++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[t * K + k]! * ref[n * K + k]!;
    y[t * N + n] = s;
  }
  return y;
}

for (const type of TYPES) {
  test(`${type}: ORT MatMulNBits (+ offset correction) equals x·W_dequantᵀ at accuracy_level 0`, async () => {
    const { K, N, ref } = load(type);
    const rows = 3;
    const x = randomArray(rows * K, rng(11), 2);
    const want = referenceMatmul(x, rows, ref, K, N);
    for (const bits of [4, 8] as const) {
      const got = await runLinear(type, bits, 0, x, rows);
      // float32 accumulation over K = 256 products: 1e-5 of the output's scale.
      const err = relErr(got, want);
      assert.ok(err <= 1e-5, `${type} bits=${bits}: relative error ${err}`);
    }
  });
}

test('accuracy_level 4 (int8 activations) is close but not exact', async () => {
  const { K, N, ref } = load('Q4_1');
  const x = randomArray(2 * K, rng(5), 2);
  const want = referenceMatmul(x, 2, ref, K, N);
  const err = relErr(await runLinear('Q4_1', 4, 4, x, 2), want);
  assert.ok(err < 0.05, `relative error ${err}`);
});

test('quantized embedding: GatherBlockQuantized rows equal the dequantized rows (offsets included)', async () => {
  for (const type of ['Q8_0', 'Q4_1', 'Q6_K'] as const) {
    const { K, N, raw, ref } = load(type);
    const w = packNBits(type, raw, K, N, 8);
    const e = new NBitsEmitter();
    const shared = e.embedding({ scope: '/model/embed_tokens', prefix: 'model.embed_tokens', ids: 'ids', output: 'h', weight: w });
    e.linear({ scope: '/lm_head', prefix: 'lm_head', input: 'h', output: 'logits', weight: w, accuracyLevel: 0, shared });
    const graph = {
      name: 'emb',
      input: [tensorValueInfo('ids', INT64, [1, 3])],
      output: [tensorValueInfo('h', FLOAT, [1, 3, K]), tensorValueInfo('logits', FLOAT, [1, 3, N])],
      initializer: e.initializers,
      node: e.nodes,
    };
    const model = onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }], graph });
    // B is stored once and read by both the lookup and the tied head.
    assert.equal(e.initializers.filter((t) => t.name?.endsWith('.nbits.B')).length, 1);
    const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
    const ids = [3, 0, 1];
    const out = await s.run({ ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, 3]) });
    await s.release();
    const h = out.h!.data as Float32Array;
    const want = new Float32Array(3 * K);
    ids.forEach((id, t) => want.set(ref.subarray(id * K, (id + 1) * K), t * K));
    assert.ok(relErr(h, want) <= 2 ** -22, `${type} embedding`);
    const logits = out.logits!.data as Float32Array;
    assert.ok(relErr(logits, referenceMatmul(want, 3, ref, K, N)) <= 1e-5, `${type} tied head`);
  }
});

test('splitTo4Bit: two 4-bit planes (16s·(hi−8) + s·(lo−8) + 8s) mean exactly the 8-bit weight', () => {
  for (const type of ['Q8_0', 'Q6_K', 'Q5_1'] as const) {
    const { K, N, raw, ref } = load(type);
    const { hi, lo } = splitTo4Bit(packNBits(type, raw, K, N));
    assert.equal(hi.bits, 4);
    assert.equal(hi.data.byteLength + lo.data.byteLength, N * K);
    const a = unpackNBits(hi);
    const b = unpackNBits(lo);
    const sum = a.map((v, i) => v + b[i]!);
    assert.ok(relErr(sum, ref) <= 2 ** -21, `${type}: ${relErr(sum, ref)}`);
  }
});
