import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PatchbayError } from '../../src/errors.ts';
import { loadAdapter } from '../../src/adapters/index.ts';
import { compileS2ft } from '../../src/adapters/s2ft.ts';
import { writeS2ftAdapter } from '../../src/adapters/s2ft-format.ts';
import type { TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { assertClose, denseOfFactors, rand, rng, target, tempDir, writeAdapter } from './helpers.ts';

/** Dense ΔW [d_out, d_in] of an S²FT block, straight from the definition. */
function denseS2ft(axis: 'output' | 'input', idx: number[], S: Float32Array, dIn: number, dOut: number): Float64Array {
  const w = new Float64Array(dOut * dIn);
  const k = idx.length;
  idx.forEach((c, j) => {
    if (axis === 'output') for (let i = 0; i < dIn; i++) w[c * dIn + i] = S[j * dIn + i]!;
    else for (let o = 0; o < dOut; o++) w[o * dIn + c] = S[o * k + j]!;
  });
  return w;
}

test('compiled factors equal the dense ΔW for both axes (random case)', () => {
  const r = rng(5);
  const [dIn, dOut] = [7, 11];
  const outIdx = [9, 0, 4];
  const Sout = rand(3 * dIn, r);
  assertClose(denseOfFactors(compileS2ft('output', Int32Array.from(outIdx), Sout, dIn, dOut), dIn, dOut), denseS2ft('output', outIdx, Sout, dIn, dOut), 0);
  const inIdx = [6, 2];
  const Sin = rand(dOut * 2, r);
  assertClose(denseOfFactors(compileS2ft('input', Int32Array.from(inIdx), Sin, dIn, dOut), dIn, dOut), denseS2ft('input', inIdx, Sin, dIn, dOut), 0);
});

test('loads an S²FT directory written by the format writer', async () => {
  const r = rng(9);
  const dir = join(await tempDir(), 's2');
  const S1 = rand(8 * 2, r); // c_proj input side: [d_out=8, k=2]
  const S2 = rand(3 * 8, r); // c_fc output side: [k=3, d_in=8]
  await writeS2ftAdapter(dir, new Map([
    ['transformer.h.0.attn.c_proj', { axis: 'input' as const, idx: Int32Array.from([1, 5]), S: S1, other: 8 }],
    ['transformer.h.1.mlp.c_fc', { axis: 'output' as const, idx: Int32Array.from([15, 3, 7]), S: S2, other: 8 }],
  ]), 'tiny-gpt2');
  const ad = await loadAdapter(dir, target());
  assert.equal(ad.kind, 's2ft');
  assert.deepEqual(ad.modules, ['transformer.h.0.attn.c_proj', 'transformer.h.1.mlp.c_fc']);
  assert.equal(ad.rank, 3);
  assertClose(denseOfFactors(ad.binding.layers.get('transformer.h.0.attn.c_proj')!, 8, 8), denseS2ft('input', [1, 5], S1, 8, 8), 0);
  assertClose(denseOfFactors(ad.binding.layers.get('transformer.h.1.mlp.c_fc')!, 8, 16), denseS2ft('output', [15, 3, 7], S2, 8, 16), 0);
});

const m = 'transformer.h.0.mlp.c_fc';
const cfg = (axis = 'output', extra = {}) => ({ peft_type: 'S2FT', modules: { [m]: { axis } }, ...extra });
const t = (idx: number[], sShape: number[], idxDtype: 'I32' | 'F32' = 'I32'): Record<string, TensorToWrite> => ({
  [`${m}.s2ft.idx`]: { dtype: idxDtype, shape: [idx.length], data: idxDtype === 'I32' ? Int32Array.from(idx) : Float32Array.from(idx) },
  [`${m}.s2ft.S`]: { dtype: 'F32', shape: sShape, data: new Float32Array(sShape.reduce((p, d) => p * d, 1)) },
});

const rejections: Array<[string, unknown, Record<string, TensorToWrite>, RegExp]> = [
  ['bad axis', cfg('rows'), t([1], [1, 8]), /modules/],
  ['idx out of range', cfg(), t([16], [1, 8]), /idx holds 16, outside the 16 output channels/],
  ['negative idx', cfg('input'), t([-1], [16, 1]), /idx holds -1/],
  ['duplicate idx', cfg(), t([2, 2], [2, 8]), /idx holds channel 2 twice/],
  ['S shape for the wrong axis', cfg('input'), t([2, 3], [2, 8]), /S is \[2, 8\] but axis input with k=2 on a layer \[d_in=8, d_out=16\] needs \[d_out, k\] = \[16, 2\]/],
  ['S with the wrong d_in', cfg(), t([2], [1, 9]), /needs \[k, d_in\] = \[1, 8\]/],
  ['float idx', cfg(), t([2], [1, 8], 'F32'), /idx is F32, expected I32/],
  ['missing S', cfg(), { [`${m}.s2ft.idx`]: { dtype: 'I32', shape: [1], data: Int32Array.from([0]) } }, /tensor transformer.h.0.mlp.c_fc.s2ft.S is missing/],
  ['stray tensor', cfg(), { ...t([2], [1, 8]), 'x.s2ft.S': { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, /unexpected tensor x.s2ft.S/],
  ['module without a branch', { peft_type: 'S2FT', modules: { lm_head: { axis: 'output' } } }, {}, /module lm_head is not attachable/],
];

for (const [name, config, tensors, message] of rejections) {
  test(`rejects ${name} → 400`, async () => {
    const dir = await writeAdapter(join(await tempDir(), 'bad'), config, tensors);
    await assert.rejects(loadAdapter(dir, target()), (e: unknown) => {
      assert.ok(e instanceof PatchbayError, String(e));
      assert.equal(e.status, 400);
      assert.match(e.message, message);
      return true;
    });
  });
}
