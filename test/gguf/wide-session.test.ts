/**
 * The wide session (PATCHBAY_WIDE_SESSION, engine.ts): a quantized import's float32 form built at load
 * (graph/nbits-dequantize.ts) equals the 4-bit graph at accuracy_level 0 and the f32 import of the same GGUF
 * (every tensor type of the mixed fixture: Q4_0, Q4_1 and Q4_K with offset corrections, Q8_0 and Q6_K as two
 * planes with zero points, the tied head); steps of several rows run on it, one row stays on the 4-bit graph.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { loadRuntime } from '../../src/runtime/index.ts';
import { encodeModel } from '../../src/runtime/graph/onnx.ts';
import { dequantizeNBitsLayers } from '../../src/runtime/graph/nbits-dequantize.ts';
import { GGUF_FIXTURE, loadReference } from './fixture.ts';
import { runSteps as run, sliced, worst } from './q4-steps.ts';

let work: string;
const dirs: Record<string, string> = {};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-gguf-wide-'));
  for (const mode of ['f32', 'q4'] as const) {
    dirs[mode] = join(work, mode);
    await importGguf(GGUF_FIXTURE, dirs[mode]!, mode, { accuracyLevel: 0 });
  }
});
after(async () => rm(work, { recursive: true, force: true }));

// The same products in float32, summed in another order (MatMulNBits per block, the offsets as blocksum·offset):
// the project's PyTorch tolerance, as for the q4 graph itself (import-q4.test.ts).
const TOL = 1e-4;

test('the float32 form of the q4 graph has no MatMulNBits left and equals the q4 graph and the f32 import', async () => {
  const q4 = await sliced(dirs.q4!);
  const before = q4.graph!.node!.filter((n) => n.opType === 'MatMulNBits' && !n.name!.includes('/nbits_lo/')).length;
  const wide = await sliced(dirs.q4!);
  assert.equal(dequantizeNBitsLayers(wide), before);
  const ops = new Set(wide.graph!.node!.map((n) => n.opType));
  assert.ok(!ops.has('MatMulNBits') && !ops.has('FusedMatMul'), `left: ${[...ops].join(', ')}`);
  // The lookup keeps reading the quantized table; the head's planes and scales it shares stay, nothing else does.
  const inits = new Set(wide.graph!.initializer!.map((t) => t.name));
  assert.ok(inits.has('model.embed_tokens.nbits.B') && !inits.has('model.layers.0.self_attn.v_proj.nbits.offsets'));

  const q4Run = await run(dirs.q4!, encodeModel(q4));
  const wideRun = await run(dirs.q4!, encodeModel(wide));
  const f32Run = await run(dirs.f32!, encodeModel(await sliced(dirs.f32!)));
  const vsQ4 = worst(wideRun.out, q4Run.out);
  const vsF32 = worst(wideRun.out, f32Run.out);
  assert.ok(vsQ4 <= TOL, `float32 form vs q4 graph: max |Δlogit| ${vsQ4}`);
  assert.ok(vsF32 <= TOL, `float32 form vs f32 import: max |Δlogit| ${vsF32}`);
  assert.ok(worst(q4Run.out, f32Run.out.map((x) => x.map((v) => v + 0.01))) > 5e-3, 'the comparison can fail');
});

test('a model without MatMulNBits layers is left unchanged', async () => {
  const f32 = await sliced(dirs.f32!);
  const nodes = f32.graph!.node!.length;
  assert.equal(dequantizeNBitsLayers(f32), 0);
  assert.equal(f32.graph!.node!.length, nodes);
});

test('the engine runs steps of several rows on the wide session and one row on the 4-bit graph, same logits', async () => {
  const q4 = encodeModel(await sliced(dirs.q4!));
  const wideModel = await sliced(dirs.q4!);
  dequantizeNBitsLayers(wideModel);
  const wide = encodeModel(wideModel);
  const batched = await run(dirs.q4!, q4, wide);
  assert.deepEqual(batched.graphs, ['wide', 'wide', 'wide', 'wide']);
  const reference = await run(dirs.q4!, q4);
  assert.ok(worst(batched.out, reference.out) <= TOL);
  const alone = await run(dirs.q4!, q4, wide, 1);
  // The engine's main session (reported as 'delta' when there is no separate plain one) serves the lone row.
  assert.deepEqual(alone.graphs, ['delta', 'delta', 'delta', 'delta']);
  // Counting tokens (the float32 form): a lone sequence's multi-token prefill runs wide, its decode steps do not.
  assert.ok(loadReference().prompts[0]!.input_ids.length >= 2);
  const prefill = await run(dirs.q4!, q4, wide, 1, true);
  assert.deepEqual(prefill.graphs, ['wide', 'delta', 'delta', 'delta']);
  const lone = await run(dirs.q4!, q4, undefined, 1);
  assert.ok(worst(prefill.out, lone.out) <= TOL);
});

test('loadRuntime builds the wide session from a quantized model only when asked', async () => {
  const engineOf = async (dir: string, wideSession: 'off' | 'f32' | 'int8') => {
    const rt = await loadRuntime({ modelDir: dir, device: 'cpu', maxBatch: 4, maxQueue: 4, threads: 1, sessionWorkers: 'off', wideSession });
    try {
      return rt.versions.current().engine.wideSession !== undefined;
    } finally {
      await rt.close();
    }
  };
  assert.equal(await engineOf(dirs.q4!, 'f32'), true);
  assert.equal(await engineOf(dirs.q4!, 'int8'), true);
  assert.equal(await engineOf(dirs.q4!, 'off'), false);
  assert.equal(await engineOf(dirs.f32!, 'f32'), false, 'an f32 model has nothing to widen');
});
