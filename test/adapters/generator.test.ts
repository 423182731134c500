/**
 * The generator kind on real ONNX generators (tests/helpers/synthetic-generator.ts) against the real tiny-gpt2
 * graph: what it compiles, and every refusal — at load (manifest, base, shapes, files) and per condition
 * (dimension, non-numbers, float32 overflow, NaN produced by the generator, strings without an embedding).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { generatorKind } from '../../src/adapters/generator.ts';
import type { AttachTarget } from '../../src/adapters/index.ts';
import { PatchbayError } from '../../src/errors.ts';
import { realTarget, removeTempDirs, tempDir } from '../registry/fixtures.ts';
import { writeSyntheticGenerator, type SyntheticGeneratorSpec } from '../helpers/synthetic-generator.ts';

const MODULES = ['transformer.h.0.attn.c_attn', 'transformer.h.1.mlp.c_fc'];
const SPEC: SyntheticGeneratorSpec = { modules: MODULES, rank: 3, conditionDim: 5, seed: 9 };
let target: AttachTarget;
let llama: AttachTarget;
let root: string;

before(async () => {
  target = await realTarget('tiny-gpt2');
  llama = await realTarget('tiny-llama');
  root = await tempDir('patchbay-generators-');
});
after(removeTempDirs);

let n = 0;
async function build(spec: Partial<SyntheticGeneratorSpec> = {}): Promise<string> {
  return writeSyntheticGenerator(path.join(root, `g${++n}`), target, { ...SPEC, ...spec });
}

async function rejects(p: Promise<unknown>, status: number, code: string, pattern?: RegExp): Promise<PatchbayError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof PatchbayError, `expected a PatchbayError, got ${String(err)}`);
  assert.equal(err.status, status, err.message);
  assert.equal(err.code, code, err.message);
  if (pattern) assert.match(err.message, pattern);
  return err;
}

test('generates per-condition factors in the delta layout, with the manifest scale folded into B', async () => {
  const dir = await build();
  const g = await generatorKind.load(dir, target, 'syn');
  assert.deepEqual(g.modules, MODULES);
  const c1 = await g.condition([0.1, 0.2, 0.3, 0.4, 0.5]);
  const c2 = await g.condition([0.5, 0.4, 0.3, 0.2, 0.1]);
  const f1 = (await g.generate(c1, 'k1')).binding;
  const f2 = (await g.generate(c2, 'k2')).binding;
  assert.equal(f1.key, 'k1');
  const layer = target.layers.get(MODULES[1]!)!;
  const a = f1.layers.get(MODULES[1]!)!;
  assert.equal(a.rank, 3);
  assert.equal(a.a.length, layer.dIn * 3);
  assert.equal(a.b.length, 3 * layer.dOut);
  assert.notDeepEqual(a.a, f2.layers.get(MODULES[1]!)!.a, 'different conditions, different factors');
  await g.close();

  // Same graph, scale 1 instead of 2: a unchanged, b halved.
  const half = await build({ manifest: { scale: 1 } });
  const h = await generatorKind.load(half, target, 'half');
  const f = (await h.generate(c1, 'k')).binding.layers.get(MODULES[1]!)!;
  assert.deepEqual(f.a, a.a);
  f.b.forEach((v, i) => assert.ok(Math.abs(2 * v - a.b[i]!) <= 1e-7 * Math.abs(a.b[i]!) + 1e-12));
  await h.close();
});

test('conditions that do not fit are 400 `condition`, naming what is wrong', async () => {
  const g = await generatorKind.load(await build(), target, 'syn');
  await rejects(g.condition(Array.from({ length: 1001 }, (_, i) => i)), 400, 'condition_dimension_mismatch', /5 numbers.*got 1001/);
  await rejects(g.condition([1, 2, 'x', 4, 5]), 400, 'invalid_condition', /condition\[2\]/);
  await rejects(g.condition([1, 2, Number.NaN, 4, 5]), 400, 'invalid_condition');
  await rejects(g.condition([1, 2, Number.POSITIVE_INFINITY, 4, 5]), 400, 'invalid_condition');
  await rejects(g.condition([1, 2, 1e39, 4, 5]), 400, 'invalid_condition', /float32/);
  await rejects(g.condition('FALSTAFF'), 400, 'invalid_condition', /vector conditions only/);
  // sqrt(c + 1) is NaN for c < −1: the generator's own output is refused, not served.
  const bad = await g.condition([0, 0, -5, 0, 0]);
  await rejects(g.generate(bad, 'nan'), 400, 'generator_output_not_finite', /NaN/);
  // …and the generator still serves good conditions afterwards.
  assert.ok((await g.generate(await g.condition([0, 0, 0, 0, 0]), 'ok')).bytes > 0);
  await g.close();
});

test('load refuses generators that do not fit, with a 400 naming the problem', async () => {
  const [m0, m1] = MODULES as [string, string];
  const dIn = target.layers.get(m0)!.dIn;
  await rejects(generatorKind.load(await build({ baseModel: 'tiny-llama' }), target, 'x'), 400, 'generator_base_mismatch', /trained on base model tiny-llama/);
  await rejects(generatorKind.load(await build({ baseModel: 'tiny-llama' }), llama, 'x'), 400, 'generator_base_mismatch', /none of its 2 modules/);
  await rejects(generatorKind.load(await build({ shapeOverride: { [`${m0}.A`]: [3, dIn + 1] } }), target, 'x'), 400, 'generator_shape_mismatch', new RegExp(`${m0}\\.A is \\[3, ${dIn + 1}\\]`));
  await rejects(generatorKind.load(await build({ omit: [`${m1}.B`] }), target, 'x'), 400, 'generator_shape_mismatch', new RegExp(`no output ${m1}\\.B`));
  await rejects(generatorKind.load(await build({ manifest: { targets: [m0] } }), target, 'x'), 400, 'generator_shape_mismatch', /names no target/);
  await rejects(generatorKind.load(await build({ manifest: { condition_dim: 6 } }), target, 'x'), 400, 'generator_shape_mismatch', /condition_dim 6/);
  await rejects(generatorKind.load(await build({ manifest: { targets: [m0, 'transformer.h.9.mlp.c_fc'] } }), target, 'x'), 400, 'generator_not_attachable', /no linear layer/);
  await rejects(generatorKind.load(await build({ manifest: { rank: 'four' } }), target, 'x'), 400, 'invalid_generator', /rank/);
  await rejects(generatorKind.load(await build({ manifest: { onnx: '../elsewhere.onnx' } }), target, 'x'), 400, 'invalid_generator', /file name/);
  await rejects(generatorKind.load(await build({ manifest: { onnx: 'missing.onnx' } }), target, 'x'), 400, 'invalid_generator', /missing\.onnx cannot be read/);
  await rejects(
    generatorKind.load(await build({ manifest: { string_condition: { method: 'mean_token_embedding', projection: 'nope.safetensors' } } }), target, 'x'),
    400,
    'invalid_generator',
    /nope\.safetensors cannot be read/,
  );
  const corrupt = await build();
  await writeFile(path.join(corrupt, 'generator.onnx'), 'not a model');
  await rejects(generatorKind.load(corrupt, target, 'x'), 400, 'invalid_generator', /generator\.onnx/);
  const noJson = await build();
  await writeFile(path.join(noJson, 'generator.json'), '{"format": ');
  await rejects(generatorKind.load(noJson, target, 'x'), 400, 'invalid_generator', /not valid JSON/);
});

test('a generator whose trial run on c = 0 produces NaN is refused at load', async () => {
  await rejects(generatorKind.load(await build({ shift: -2 }), target, 'x'), 400, 'invalid_generator', /trial run on a zero condition.*NaN/);
});
