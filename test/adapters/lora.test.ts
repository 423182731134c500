import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PatchbayError } from '../../src/errors.ts';
import { loadAdapter } from '../../src/adapters/index.ts';
import type { TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { assertClose, denseOfFactors, DIMS, rand, rng, target, tempDir, writeAdapter } from './helpers.ts';

const BASE = { peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['c_attn'], bias: 'none', use_rslora: false, fan_in_fan_out: true, modules_to_save: null };

/** lora_A [r, d_in], lora_B [d_out, r] per module, random. */
function factors(modules: Record<string, number>, seed = 1, suffix = '', dtype: 'F32' | 'F16' = 'F32') {
  const r = rng(seed);
  const tensors: Record<string, TensorToWrite> = {};
  const raw: Record<string, { A: Float32Array; B: Float32Array }> = {};
  for (const [m, rank] of Object.entries(modules)) {
    const [dIn, dOut] = DIMS[m]!;
    const A = rand(rank * dIn, r);
    const B = rand(dOut * rank, r);
    raw[m] = { A, B };
    tensors[`base_model.model.${m}.lora_A${suffix}.weight`] = { dtype, shape: [rank, dIn], data: A };
    tensors[`base_model.model.${m}.lora_B${suffix}.weight`] = { dtype, shape: [dOut, rank], data: B };
  }
  return { tensors, raw };
}

/** Dense s·B·A [d_out, d_in]. */
function denseLora(A: Float32Array, B: Float32Array, r: number, dIn: number, dOut: number, s: number): Float64Array {
  const w = new Float64Array(dOut * dIn);
  for (let o = 0; o < dOut; o++) for (let i = 0; i < dIn; i++) {
    let v = 0;
    for (let j = 0; j < r; j++) v += B[o * r + j]! * A[j * dIn + i]!;
    w[o * dIn + i] = s * v;
  }
  return w;
}

async function load(config: unknown, tensors: Record<string, TensorToWrite> | Uint8Array, t = target()) {
  const dir = await writeAdapter(join(await tempDir(), 'ad'), config, tensors);
  return loadAdapter(dir, t);
}

test('plain LoRA: a = Aᵀ, b = (alpha/r)·Bᵀ, so a·b = (s·B·A)ᵀ', async () => {
  const mods = { 'transformer.h.0.attn.c_attn': 4, 'transformer.h.1.attn.c_attn': 4 };
  const { tensors, raw } = factors(mods);
  const ad = await load(BASE, tensors);
  assert.equal(ad.kind, 'lora');
  assert.equal(ad.id, 'ad');
  assert.equal(ad.rank, 4);
  assert.deepEqual(ad.modules, Object.keys(mods));
  assert.equal(ad.bytes, 2 * 4 * (8 * 4 + 4 * 24));
  for (const m of Object.keys(mods)) {
    const f = ad.binding.layers.get(m)!;
    assertClose(denseOfFactors(f, 8, 24), denseLora(raw[m]!.A, raw[m]!.B, 4, 8, 24, 2));
  }
});

test('rsLoRA scale alpha/√r; rank_pattern and alpha_pattern per module (PEFT key matching)', async () => {
  const mods = { 'transformer.h.0.attn.c_attn': 4, 'transformer.h.1.attn.c_attn': 2, 'transformer.h.0.attn.c_proj': 4, 'transformer.h.1.mlp.c_proj': 4 };
  const { tensors, raw } = factors(mods, 2);
  const cfg = { ...BASE, use_rslora: true, lora_alpha: 16, target_modules: ['c_attn', 'c_proj'], rank_pattern: { 'h.1.attn.c_attn': 2 }, alpha_pattern: { 'mlp.c_proj': 3 } };
  const ad = await load(cfg, tensors);
  const expectScale: Record<string, number> = {
    'transformer.h.0.attn.c_attn': 16 / 2,
    'transformer.h.1.attn.c_attn': 16 / Math.sqrt(2),
    'transformer.h.0.attn.c_proj': 16 / 2,
    'transformer.h.1.mlp.c_proj': 3 / 2,
  };
  for (const [m, r] of Object.entries(mods)) {
    const [dIn, dOut] = DIMS[m]!;
    const f = ad.binding.layers.get(m)!;
    assert.equal(f.rank, r, m);
    assertClose(denseOfFactors(f, dIn, dOut), denseLora(raw[m]!.A, raw[m]!.B, r, dIn, dOut, expectScale[m]!));
  }
});

test('accepts .lora_A.default.weight names, F16 factors, regex and all-linear target_modules', async () => {
  const mods = { 'transformer.h.0.mlp.c_fc': 2 };
  const { tensors, raw } = factors(mods, 3, '.default', 'F16');
  for (const tm of ['.*\\.mlp\\.c_fc', 'all-linear', ['all-linear'], ['mlp.c_fc']]) {
    const ad = await load({ ...BASE, r: 2, lora_alpha: 2, target_modules: tm }, tensors);
    const f = ad.binding.layers.get('transformer.h.0.mlp.c_fc')!;
    assertClose(denseOfFactors(f, 8, 16), denseLora(raw['transformer.h.0.mlp.c_fc']!.A, raw['transformer.h.0.mlp.c_fc']!.B, 2, 8, 16, 1), 2e-3);
  }
});

const c = 'transformer.h.0.attn.c_attn';
const ok = () => factors({ [c]: 4 }).tensors;
const rejections: Array<[string, unknown, () => Record<string, TensorToWrite> | Uint8Array, RegExp, string]> = [
  ['DoRA', { ...BASE, use_dora: true }, ok, /DoRA \(use_dora: true\)/, 'unsupported_adapter_feature'],
  ['lora bias', { ...BASE, bias: 'lora_only' }, ok, /trained biases \(bias: "lora_only"\)/, 'unsupported_adapter_feature'],
  ['modules_to_save', { ...BASE, modules_to_save: ['lm_head'] }, ok, /modules_to_save \(modules_to_save: \["lm_head"\]\)/, 'unsupported_adapter_feature'],
  ['lora_bias', { ...BASE, lora_bias: true }, ok, /LoRA bias on B/, 'unsupported_adapter_feature'],
  ['non-LORA peft_type', { ...BASE, peft_type: 'IA3' }, ok, /no known adapter kind/, 'unsupported_adapter_feature'],
  ['bad config field', { ...BASE, r: 'four' }, ok, /adapter_config.json: .*r/, 'invalid_adapter'],
  ['config not JSON', '{"peft_type": "LORA",', ok, /not valid JSON/, 'invalid_adapter'],
  ['DoRA magnitude tensor', BASE, () => ({ ...ok(), [`base_model.model.${c}.lora_magnitude_vector`]: { dtype: 'F32', shape: [24], data: new Float32Array(24) } }), /DoRA magnitude vector is not supported/, 'unsupported_adapter_feature'],
  ['stray tensor', BASE, () => ({ ...ok(), 'base_model.model.lm_head.weight': { dtype: 'F32', shape: [1], data: new Float32Array(1) } }), /unexpected tensor base_model.model.lm_head.weight/, 'invalid_adapter'],
  ['lm_head has no branch', { ...BASE, target_modules: ['lm_head'] }, () => factors({ lm_head: 4 }).tensors, /module lm_head is not attachable: the base graph has no delta branch for it/, 'adapter_not_attachable'],
  ['unknown module', { ...BASE, target_modules: ['c_attn', 'q'] }, () => ({ ...ok(), 'base_model.model.transformer.h.0.attn.q.lora_A.weight': { dtype: 'F32', shape: [4, 8], data: new Float32Array(32) }, 'base_model.model.transformer.h.0.attn.q.lora_B.weight': { dtype: 'F32', shape: [8, 4], data: new Float32Array(32) } }), /module transformer.h.0.attn.q is not attachable: the base model has no linear layer of that name/, 'adapter_not_attachable'],
  ['another architecture', { ...BASE, target_modules: ['q_proj'] }, () => ({ 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': { dtype: 'F32', shape: [4, 8], data: new Float32Array(32) }, 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': { dtype: 'F32', shape: [8, 4], data: new Float32Array(32) } }), /does not fit this base model: none of its 1 modules \(e.g. model.layers.0.self_attn.q_proj\)/, 'adapter_base_mismatch'],
  ['d_in mismatch', BASE, () => ({ [`base_model.model.${c}.lora_A.weight`]: { dtype: 'F32', shape: [4, 300], data: new Float32Array(1200) }, [`base_model.model.${c}.lora_B.weight`]: { dtype: 'F32', shape: [24, 4], data: new Float32Array(96) } }), /module transformer.h.0.attn.c_attn: lora_A is \[4, 300\] but the layer takes d_in=8/, 'adapter_shape_mismatch'],
  ['d_out mismatch', BASE, () => ({ [`base_model.model.${c}.lora_A.weight`]: { dtype: 'F32', shape: [4, 8], data: new Float32Array(32) }, [`base_model.model.${c}.lora_B.weight`]: { dtype: 'F32', shape: [12, 4], data: new Float32Array(48) } }), /lora_B is \[12, 4\] but the layer gives d_out=24/, 'adapter_shape_mismatch'],
  ['rank differs from config', { ...BASE, r: 8 }, ok, /lora_A is \[4, 8\] but the config gives this module r=8/, 'adapter_shape_mismatch'],
  ['missing lora_B', BASE, () => ({ [`base_model.model.${c}.lora_A.weight`]: { dtype: 'F32', shape: [4, 8], data: new Float32Array(32) } }), /has lora_A but no lora_B/, 'invalid_adapter'],
  ['integer factors', BASE, () => ({ [`base_model.model.${c}.lora_A.weight`]: { dtype: 'I32', shape: [4, 8], data: new Int32Array(32) }, [`base_model.model.${c}.lora_B.weight`]: { dtype: 'F32', shape: [24, 4], data: new Float32Array(96) } }), /is I32, expected a float dtype/, 'invalid_adapter'],
  ['not targeted by config', { ...BASE, target_modules: ['c_proj'] }, ok, /has LoRA tensors but adapter_config.json target_modules \["c_proj"\] does not select it/, 'invalid_adapter'],
  ['excluded by config', { ...BASE, exclude_modules: ['h.0.attn.c_attn'] }, ok, /does not select it/, 'invalid_adapter'],
  ['NaN in lora_A (found in the compile pass, named with its index)', BASE, () => { const t = ok(); (t[`base_model.model.${c}.lora_A.weight`]!.data as Float32Array)[5] = Number.NaN; return t; }, /tensor base_model.model.transformer.h.0.attn.c_attn.lora_A.weight holds NaN at flat index 5/, 'adapter_not_finite'],
  ['-Inf in lora_B', BASE, () => { const t = ok(); (t[`base_model.model.${c}.lora_B.weight`]!.data as Float32Array)[95] = -Infinity; return t; }, /lora_B.weight holds -Infinity at flat index 95/, 'adapter_not_finite'],
  ['alpha/r · lora_B overflowing float32', { ...BASE, lora_alpha: 1e38 }, () => { const t = ok(); (t[`base_model.model.${c}.lora_B.weight`]!.data as Float32Array).fill(100); return t; }, /lora_B × scaling 2\.5e\+37 overflows float32/, 'adapter_not_finite'],
  ['corrupt safetensors', BASE, () => new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0x7b]), /invalid safetensors .*header length 1 is too short/, 'invalid_safetensors'],
];

for (const [name, cfg, tensors, message, code] of rejections) {
  test(`rejects ${name} → 400 ${code}`, async () => {
    await assert.rejects(load(cfg, tensors()), (e: unknown) => {
      assert.ok(e instanceof PatchbayError, String(e));
      assert.equal(e.status, 400);
      assert.equal(e.code, code);
      assert.match(e.message, message);
      return true;
    });
  });
}

test('a missing weights file → 400 naming it; a config refused first is what the answer says (read-ahead weights closed)', async () => {
  const dir = await writeAdapter(join(await tempDir(), 'ad'), BASE, ok());
  await rm(join(dir, 'adapter_model.safetensors'));
  await assert.rejects(loadAdapter(dir, target()), /adapter ad: adapter_model.safetensors is missing/);
  const bad = await writeAdapter(join(await tempDir(), 'ad'), { ...BASE, use_dora: true }, ok());
  await rm(join(bad, 'adapter_model.safetensors'));
  await assert.rejects(loadAdapter(bad, target()), /DoRA/);
});

test('unknown adapter directory → 404', async () => {
  await assert.rejects(loadAdapter(join(await tempDir(), 'nope'), target()), (e: unknown) => e instanceof PatchbayError && e.status === 404);
});

test('base_model_name_or_path checked against the names the base answers to', async () => {
  const t = target(undefined, ['tiny-gpt2']);
  await load({ ...BASE, base_model_name_or_path: 'tools/.cache/tiny-gpt2-hf/' }, ok(), t);
  await assert.rejects(load({ ...BASE, base_model_name_or_path: 'meta-llama/Llama-3.2-1B' }, ok(), t), /trained on base model meta-llama\/Llama-3.2-1B, but this server serves tiny-gpt2/);
});
