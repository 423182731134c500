/**
 * `--weights q4 | q8` on the tiny mixed-type Llama GGUF (Q4_K/Q4_0/Q4_1/Q8_0/Q6_K/F16/BF16/F32 tensors, a Q6_K
 * tied embedding): the quantized graph equals the imported f32 graph (the dequantized weights, itself checked
 * against PyTorch in import-logits.test.ts) at accuracy_level 0, its layers keep their HF module paths, and a
 * LoRA on the 4-bit base gives the f32 base's LoRA logits.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { readModelInfo, type ModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { addDeltaBranches, findLinearLayers } from '../../src/runtime/graph/index.ts';
import { decodeModel, encodeModel } from '../../src/runtime/graph/onnx.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { keepDeltaBranches } from '../../src/runtime/graph/keep-branches.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { GGUF_FIXTURE, loadReference } from './fixture.ts';
import type { DeltaBinding, LayerFactors } from '../../src/runtime/types.ts';

let work: string;
const dirs: Record<string, string> = {};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-gguf-q4-'));
  for (const mode of ['f32', 'q4', 'q8'] as const) {
    dirs[mode] = join(work, mode);
    await importGguf(GGUF_FIXTURE, dirs[mode]!, mode, { accuracyLevel: 0 });
  }
});
after(async () => rm(work, { recursive: true, force: true }));

/**
 * Logits of every prompt's last position, then of 3 decode steps, optionally with per-row deltas. `reduced`:
 * the decode steps run on a session whose graph keeps only the binding's branches (branch-sessions.ts).
 */
async function run(dir: string, binding?: DeltaBinding, reduced = false): Promise<Float32Array[]> {
  const info: ModelInfo = await readModelInfo(dir);
  const model = decodeModel(new Uint8Array(await readFile(info.onnxPath)));
  // The runtime's last-position logits rewrite must find the head through the 4-bit import's Adds.
  assert.equal(sliceLogits(model), true);
  const bytes = encodeModel(model);
  const rewrite = binding ? addDeltaBranches(bytes, 'all-linear') : undefined;
  const session = await createSession(rewrite?.bytes ?? bytes, { device: 'cpu', threads: 1 });
  const branchSessions = reduced
    ? { max: 1, buildAfterSteps: 1, build: (keep: ReadonlySet<string>) => createSession(keepDeltaBranches(rewrite!.bytes, rewrite!.layers, keep), { device: 'cpu', threads: 1 }) }
    : undefined;
  const engine = new Engine({ session, deltaLayers: rewrite?.layers ?? [], branchSessions, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
  try {
    const prompts = loadReference().prompts.map((p) => p.input_ids);
    const feeds = rewrite ? deltaTensors(rewrite.layers, prompts.map(() => binding)) : {};
    const out: Float32Array[] = [];
    let step = await engine.forward(engine.emptyKv(prompts.length), prompts, feeds);
    out.push(...step.logits);
    await engine.branchSessionsSettled();
    for (let s = 0; s < 3; s++) {
      step = await engine.forward(step.kv, prompts.map((_, b) => [(s * 7 + b) % info.vocabSize]), feeds);
      assert.equal(step.graph, reduced ? 'delta-used' : 'delta');
      out.push(...step.logits);
    }
    return out;
  } finally {
    await engine.release();
  }
}

function worst(a: Float32Array[], b: Float32Array[]): number {
  return Math.max(...a.map((x, i) => maxAbsDiff(x, Array.from(b[i]!))));
}

// Float32 summation order differs (MatMulNBits dequantizes per block; offsets are added as blocksum·offset):
// measured ~1e-6 here; 1e-4 is the project's PyTorch tolerance.
const TOL = 1e-4;

test('q4 and q8 graphs equal the dequantized f32 graph at accuracy_level 0 (prefill and decode steps)', async () => {
  const f32 = await run(dirs.f32!);
  for (const mode of ['q4', 'q8']) {
    const diff = worst(await run(dirs[mode]!), f32);
    assert.ok(diff <= TOL, `${mode}: max |Δlogit| ${diff}`);
  }
});

test('q4 graph: quantized tensors are MatMulNBits layers under HF module paths, floats stay MatMul, one token table', async () => {
  const model = decodeModel(new Uint8Array(await readFile(join(dirs.q4!, 'onnx', 'model.onnx'))));
  const ops = Object.fromEntries(findLinearLayers(model).map((l) => [l.name, `${l.op} ${l.dIn}x${l.dOut}`]));
  assert.deepEqual(ops, {
    'model.layers.0.self_attn.q_proj': 'MatMulNBits 256x256', // Q4_K, rows un-permuted as bytes
    'model.layers.0.self_attn.k_proj': 'MatMulNBits 256x128', // Q4_0
    'model.layers.0.self_attn.v_proj': 'MatMulNBits 256x128', // Q4_1
    'model.layers.0.self_attn.o_proj': 'MatMulNBits 256x256', // Q8_0: two 4-bit planes, one layer
    'model.layers.0.mlp.gate_proj': 'MatMul 256x512', // F16: float fallback
    'model.layers.0.mlp.up_proj': 'MatMul 256x512', // BF16
    'model.layers.0.mlp.down_proj': 'MatMulNBits 512x256', // Q6_K: two 4-bit planes, block 16
    'model.layers.1.self_attn.q_proj': 'MatMulNBits 256x256',
    'model.layers.1.self_attn.k_proj': 'MatMulNBits 256x128',
    'model.layers.1.self_attn.v_proj': 'MatMulNBits 256x128',
    'model.layers.1.self_attn.o_proj': 'MatMulNBits 256x256',
    'model.layers.1.mlp.gate_proj': 'MatMulNBits 256x512',
    'model.layers.1.mlp.up_proj': 'MatMul 256x512', // F32
    'model.layers.1.mlp.down_proj': 'MatMulNBits 512x256',
    lm_head: 'MatMulNBits 256x' + loadReference().vocab_size, // tied Q6_K table
  });
  const inits = model.graph!.initializer!.map((t) => t.name);
  assert.ok(!inits.includes('lm_head.weight') && !inits.includes('model.embed_tokens.weight'), 'no float copy of the token table');
  assert.equal(inits.filter((n) => n === 'model.embed_tokens.nbits.B').length, 1);
  assert.equal(inits.filter((n) => n === 'model.embed_tokens.nbits_lo.B').length, 1);
  // q4: every MatMulNBits node is 4-bit at accuracy_level 0 (auto), so the graph stays exact.
  const attr = (n: { attribute?: { name?: string | null; i?: unknown }[] | null }, a: string) => Number(n.attribute!.find((x) => x.name === a)!.i);
  const nbits = model.graph!.node!.filter((n) => n.opType === 'MatMulNBits');
  assert.deepEqual([...new Set(nbits.map((n) => `${attr(n, 'bits')}/${attr(n, 'accuracy_level')}`))], ['4/0']);
  assert.ok(model.graph!.node!.some((n) => n.opType === 'GatherBlockQuantized'));
  // Q8_0 (no offsets): the low plane is unsigned, so it takes an all-zero zero_points input and needs no blocksum
  // correction; Q4_1 (v_proj) keeps its correction MatMul.
  const named = (name: string) => model.graph!.node!.find((n) => n.name === name);
  assert.equal(named('/model/layers.0/self_attn/o_proj/nbits_lo/MatMulNBits')!.input!.length, 4);
  assert.equal(named('/model/layers.0/self_attn/o_proj/nbits_offset/FusedMatMul'), undefined);
  assert.ok(named('/model/layers.0/self_attn/v_proj/nbits_offset/FusedMatMul'));
  const config = JSON.parse(await readFile(join(dirs.q4!, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config['_name_or_path'], 'tiny-llama-mixed');
});

test('a LoRA on the 4-bit base gives the same logits as on the f32 base', async () => {
  const layers = findLinearLayers(decodeModel(new Uint8Array(await readFile(join(dirs.q4!, 'onnx', 'model.onnx')))));
  let seed = 5;
  const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * scale);
  const factors = new Map<string, LayerFactors>();
  for (const l of layers) if (/q_proj|v_proj|down_proj|gate_proj/.test(l.name)) factors.set(l.name, { rank: 4, a: rand(l.dIn * 4, 0.2), b: rand(4 * l.dOut, 0.2) });
  const binding: DeltaBinding = { key: 'lora', layers: factors };
  const f32 = await run(dirs.f32!, binding);
  const q4 = await run(dirs.q4!, binding);
  assert.ok(worst(f32, await run(dirs.f32!)) > 1e-2, 'the LoRA changes the logits');
  const diff = worst(q4, f32);
  assert.ok(diff <= TOL, `LoRA on q4 vs on f32: max |Δlogit| ${diff}`);
  // The graph reduced to the LoRA's 8 layers (of 14 with branches) drops branches that added exact zeros.
  const q4Reduced = await run(dirs.q4!, binding, true);
  const same = worst(q4Reduced, q4);
  assert.ok(same <= 1e-6, `reduced vs full delta graph on q4: max |Δlogit| ${same}`);
  assert.ok(worst(q4Reduced, f32) <= TOL);
});
