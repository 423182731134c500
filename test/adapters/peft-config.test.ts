import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTargeted, moduleScaling, patternKey, PeftLoraConfigSchema, unsupportedFeatures } from '../../src/adapters/peft-config.ts';

const cfg = (extra: Record<string, unknown>) => PeftLoraConfigSchema.parse({ peft_type: 'LORA', r: 8, lora_alpha: 16, ...extra });

test('target_modules list: exact or ".<entry>" suffix, not a bare substring', () => {
  const c = cfg({ target_modules: ['q_proj', 'mlp.up_proj'] });
  assert.equal(isTargeted(c, 'model.layers.0.self_attn.q_proj', false), true);
  assert.equal(isTargeted(c, 'model.layers.0.mlp.up_proj', false), true);
  assert.equal(isTargeted(c, 'model.layers.0.self_attn.xq_proj', false), false);
  assert.equal(isTargeted(c, 'q_proj', false), true);
});

test('target_modules string is a full-match regex (Python named groups translated)', () => {
  const c = cfg({ target_modules: '.*\\.(q|v)_proj' });
  assert.equal(isTargeted(c, 'model.layers.1.self_attn.v_proj', false), true);
  assert.equal(isTargeted(c, 'model.layers.1.self_attn.v_proj.x', false), false);
  assert.equal(isTargeted(cfg({ target_modules: '.*(?P<n>q)_proj' }), 'a.q_proj', false), true);
});

test('all-linear skips the output head; exclude_modules wins; null targets = trust the file', () => {
  assert.equal(isTargeted(cfg({ target_modules: 'all-linear' }), 'lm_head', true), false);
  assert.equal(isTargeted(cfg({ target_modules: 'all-linear' }), 'transformer.h.0.mlp.c_fc', false), true);
  assert.equal(isTargeted(cfg({ target_modules: ['c_fc'], exclude_modules: ['h.0.mlp.c_fc'] }), 'transformer.h.0.mlp.c_fc', false), false);
  assert.equal(isTargeted(cfg({ target_modules: ['c_fc'], exclude_modules: '.*h\\.1.*' }), 'transformer.h.1.mlp.c_fc', false), false);
  assert.equal(isTargeted(cfg({ target_modules: null }), 'anything', false), true);
});

test('layers_to_transform with and without layers_pattern', () => {
  const c = cfg({ target_modules: ['c_attn'], layers_to_transform: [1] });
  assert.equal(isTargeted(c, 'transformer.h.1.attn.c_attn', false), true);
  assert.equal(isTargeted(c, 'transformer.h.0.attn.c_attn', false), false);
  const p = cfg({ target_modules: ['q_proj'], layers_to_transform: 0, layers_pattern: 'layers' });
  assert.equal(isTargeted(p, 'model.layers.0.self_attn.q_proj', false), true);
  assert.equal(isTargeted(p, 'model.layers.2.self_attn.q_proj', false), false);
});

test('rank/alpha patterns: first key in file order with ^(.*\\.)?(key)$', () => {
  assert.equal(patternKey(['c_attn', 'h.1.attn.c_attn'], 'transformer.h.1.attn.c_attn'), 'c_attn');
  assert.equal(patternKey(['h.1.attn.c_attn'], 'transformer.h.11.attn.c_attn'), undefined);
  assert.equal(patternKey(['h\\.\\d\\.attn\\.c_attn'], 'transformer.h.3.attn.c_attn'), 'h\\.\\d\\.attn\\.c_attn');
  const c = cfg({ rank_pattern: { 'h.1.attn.c_attn': 4 }, alpha_pattern: { c_proj: 2 }, use_rslora: true });
  assert.deepEqual(moduleScaling(c, 'transformer.h.1.attn.c_attn'), { r: 4, alpha: 16, scale: 8 });
  assert.deepEqual(moduleScaling(c, 'transformer.h.0.mlp.c_proj'), { r: 8, alpha: 2, scale: 2 / Math.sqrt(8) });
  assert.deepEqual(moduleScaling(cfg({}), 'x'), { r: 8, alpha: 16, scale: 2 });
});

test('unsupportedFeatures names every refused feature and ignores defaults', () => {
  assert.deepEqual(unsupportedFeatures({ use_dora: false, bias: 'none', modules_to_save: null, layer_replication: null, lora_bias: false, target_parameters: [] }), []);
  assert.deepEqual(unsupportedFeatures({ use_dora: true, bias: 'all', modules_to_save: ['score'], trainable_token_indices: [1, 2] }), [
    'DoRA (use_dora: true)',
    'trained biases (bias: "all")',
    'modules_to_save (modules_to_save: ["score"])',
    'trainable tokens (trainable_token_indices: [1,2])',
  ]);
});
