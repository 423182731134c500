import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { convertS2ft } from '../../src/adapters/s2ft-convert.ts';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { loadAdapter } from '../../src/adapters/index.ts';
import { assertClose, denseOfFactors, rand, rng, target, tempDir } from './helpers.ts';

async function checkpoint(dir: string, modelType: string, tensors: Record<string, TensorToWrite>) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: modelType }));
  await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

const f32 = (shape: number[], data: Float32Array): TensorToWrite => ({ dtype: 'F32', shape, data });

/** GPT-2 Conv1D layout: stored [d_in, d_out]. */
function gpt2Base(seed: number) {
  const r = rng(seed);
  return {
    'transformer.wte.weight': f32([10, 8], rand(80, r)),
    'transformer.h.0.ln_1.weight': f32([8], rand(8, r)),
    'transformer.h.0.attn.c_proj.weight': f32([8, 8], rand(64, r)),
    'transformer.h.0.attn.c_proj.bias': f32([8], rand(8, r)),
    'transformer.h.0.mlp.c_fc.weight': f32([8, 16], rand(128, r)),
  } satisfies Record<string, TensorToWrite>;
}

test('GPT-2 round trip: input-side c_proj columns and output-side c_fc rows come back as trained', async () => {
  const root = await tempDir('conv-');
  const base = gpt2Base(1);
  const r = rng(2);
  const tuned = structuredClone(base);
  // c_proj, input side: PyTorch columns {2, 6} = stored rows 2 and 6 of [d_in=8, d_out=8].
  const Sin = rand(8 * 2, r); // [d_out, k]
  [2, 6].forEach((c, j) => { for (let o = 0; o < 8; o++) (tuned['transformer.h.0.attn.c_proj.weight'].data as Float32Array)[c * 8 + o]! += Sin[o * 2 + j]!; });
  // c_fc, output side: PyTorch rows {11, 0, 5} = stored columns of [d_in=8, d_out=16]; S [k, d_in].
  const outIdx = [0, 5, 11];
  const Sout = rand(3 * 8, r);
  outIdx.forEach((o, j) => { for (let i = 0; i < 8; i++) (tuned['transformer.h.0.mlp.c_fc.weight'].data as Float32Array)[i * 16 + o]! += Sout[j * 8 + i]!; });

  const out = join(root, 'adapter');
  const report = await convertS2ft({ base: await checkpoint(join(root, 'b'), 'gpt2', base), tuned: await checkpoint(join(root, 't'), 'gpt2', tuned), out });
  assert.deepEqual(report.map((x) => [x.module, x.axis, x.k, x.changedRows, x.changedCols]), [
    ['transformer.h.0.attn.c_proj', 'input', 2, 8, 2],
    ['transformer.h.0.mlp.c_fc', 'output', 3, 3, 8],
  ]);
  const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
  assert.deepEqual(cfg.modules, { 'transformer.h.0.attn.c_proj': { axis: 'input' }, 'transformer.h.0.mlp.c_fc': { axis: 'output' } });
  const st = decodeSafetensors(await readFile(join(out, 'adapter_model.safetensors')));
  assert.deepEqual([...st.tensor('transformer.h.0.attn.c_proj.s2ft.idx').data], [2, 6]);
  assert.deepEqual([...st.tensor('transformer.h.0.mlp.c_fc.s2ft.idx').data], outIdx);
  // S = tuned − base in float32: equal to the trained S up to the rounding of (base + S) − base.
  assertClose(st.tensor('transformer.h.0.attn.c_proj.s2ft.S').data as Float32Array, Sin, 1e-6);
  assertClose(st.tensor('transformer.h.0.mlp.c_fc.s2ft.S').data as Float32Array, Sout, 1e-6);

  // And the loaded adapter's factors reproduce W_tuned − W_base in PyTorch layout.
  const ad = await loadAdapter(out, target());
  const dense = denseOfFactors(ad.binding.layers.get('transformer.h.0.mlp.c_fc')!, 8, 16);
  const want = new Float64Array(16 * 8);
  for (let o = 0; o < 16; o++) for (let i = 0; i < 8; i++) {
    want[o * 8 + i] = (tuned['transformer.h.0.mlp.c_fc.weight'].data as Float32Array)[i * 16 + o]! - (base['transformer.h.0.mlp.c_fc.weight'].data as Float32Array)[i * 16 + o]!;
  }
  assertClose(dense, want, 1e-6);
});

test('Llama layout (nn.Linear [d_out, d_in]) from single safetensors files with --model-type', async () => {
  const root = await tempDir('conv-');
  const r = rng(4);
  const base = { 'model.layers.0.self_attn.v_proj.weight': f32([4, 8], rand(32, r)) };
  const tuned = structuredClone(base);
  (tuned['model.layers.0.self_attn.v_proj.weight'].data as Float32Array)[3 * 8 + 5]! += 0.25; // row 3 only
  await checkpoint(join(root, 'b'), 'llama', base);
  await checkpoint(join(root, 't'), 'llama', tuned);
  const report = await convertS2ft({ base: join(root, 'b', 'model.safetensors'), tuned: join(root, 't', 'model.safetensors'), out: join(root, 'o'), modelType: 'llama' });
  assert.deepEqual(report.map((x) => [x.axis, x.k, x.dIn, x.dOut]), [['output', 1, 8, 4]]);
});

test('refuses changes S²FT cannot carry, naming the tensor or module and channel counts', async () => {
  const root = await tempDir('conv-');
  const base = gpt2Base(1);
  const bdir = await checkpoint(join(root, 'b'), 'gpt2', base);

  const norm = structuredClone(base);
  (norm['transformer.h.0.ln_1.weight'].data as Float32Array)[0]! += 1;
  await assert.rejects(convertS2ft({ base: bdir, tuned: await checkpoint(join(root, 't1'), 'gpt2', norm), out: join(root, 'o1') }), /tensor transformer.h.0.ln_1.weight changed in 1 entries, but S²FT only carries changes to linear weights/);

  const dense = structuredClone(base);
  (dense['transformer.h.0.attn.c_proj.weight'].data as Float32Array).forEach((_, i, a) => { a[i]! += 0.5; });
  await assert.rejects(convertS2ft({ base: bdir, tuned: await checkpoint(join(root, 't2'), 'gpt2', dense), out: join(root, 'o2') }), /module transformer.h.0.attn.c_proj: changes touch 8 of 8 output rows and 8 of 8 input columns; not confined/);

  await assert.rejects(convertS2ft({ base: bdir, tuned: bdir, out: join(root, 'o3') }), /do not differ/);

  // Below --tol, a dense jitter is ignored; the real change survives.
  const jitter = structuredClone(base);
  (jitter['transformer.h.0.attn.c_proj.weight'].data as Float32Array).forEach((_, i, a) => { a[i]! += 1e-7 * (i % 3); });
  (jitter['transformer.h.0.mlp.c_fc.weight'].data as Float32Array)[4]! += 1;
  const rep = await convertS2ft({ base: bdir, tuned: await checkpoint(join(root, 't4'), 'gpt2', jitter), out: join(root, 'o4'), tol: 1e-5 });
  assert.deepEqual(rep.map((x) => [x.module, x.axis, x.k]), [['transformer.h.0.mlp.c_fc', 'output', 1]]);
});
