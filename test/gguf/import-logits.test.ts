import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { findLinearLayers } from '../../src/runtime/graph/index.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { GGUF_FIXTURE, GGUF_UNTIED_FIXTURE, loadReference } from './fixture.ts';
import { assertMatchesReference } from './q4-steps.ts';

let work: string;
let modelDir: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-gguf-'));
  modelDir = join(work, 'tiny-gguf');
  await importGguf(GGUF_FIXTURE, modelDir, 'f32');
});
after(async () => rm(work, { recursive: true, force: true }));

test('imported f32 graph matches PyTorch on the dequantized weights (padded batch, all positions, KV-cache steps)', async () => {
  const ref = loadReference();
  const tol = ref.tolerance;
  assert.ok(tol <= 1e-4);
  const info = await readModelInfo(modelDir);
  assert.equal(info.numLayers, 2);
  assert.equal(info.numKvHeads, 2);
  const session = await createSession(new Uint8Array(await readFile(info.onnxPath)), { device: 'cpu', threads: 1 });
  try {
    const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    const prompts = ref.prompts.map((p) => p.input_ids);
    assert.ok(new Set(prompts.map((p) => p.length)).size > 1, 'prompts of different lengths exercise padding');
    let step = await engine.forward(engine.emptyKv(prompts.length), prompts, {});
    ref.prompts.forEach((p, b) => {
      const diff = maxAbsDiff(step.logits[b]!, p.last_logits);
      assert.ok(diff <= tol, `prompt ${b} last logits differ by ${diff}`);
    });
    const first = ref.prompts[0]!;
    const pad = step.width - first.input_ids.length;
    first.all_logits!.forEach((expected, pos) => {
      const offset = (pad + pos) * info.vocabSize;
      const diff = maxAbsDiff(step.allLogits.subarray(offset, offset + info.vocabSize), expected);
      assert.ok(diff <= tol, `position ${pos} differs by ${diff}`);
    });
    for (let s = 0; s < first.decode_steps.length; s++) {
      ref.prompts.forEach((p, b) => assert.equal(p.decode_steps[s]!.position, step.kv.lens[b]));
      step = await engine.forward(step.kv, ref.prompts.map((p) => [p.decode_steps[s]!.token]), {});
      ref.prompts.forEach((p, b) => {
        const diff = maxAbsDiff(step.logits[b]!, p.decode_steps[s]!.logits);
        assert.ok(diff <= tol, `prompt ${b} decode step ${s} differs by ${diff}`);
      });
    }
  } finally {
    await session.release();
  }
});

test('imported graph exposes every linear layer under its HF module path (adapters can attach)', async () => {
  const model = decodeModel(new Uint8Array(await readFile(join(modelDir, 'onnx', 'model.onnx'))));
  const layers = findLinearLayers(model);
  const names = layers.map((l) => l.name).sort();
  const expected = ['lm_head'];
  for (let i = 0; i < 2; i++) {
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) {
      expected.push(`model.layers.${i}.${p}`);
    }
  }
  assert.deepEqual(names, expected.sort());
  const q = layers.find((l) => l.name === 'model.layers.0.self_attn.q_proj')!;
  assert.deepEqual([q.dIn, q.dOut, q.weightName], [256, 256, 'model.layers.0.self_attn.q_proj.weight']);
  const k = layers.find((l) => l.name === 'model.layers.1.self_attn.k_proj')!;
  assert.deepEqual([k.dIn, k.dOut], [256, 128]);
  // Tied embeddings: one [hidden, vocab] matrix serves the lm_head and the embedding Gather.
  const inits = (model.graph?.initializer ?? []).map((t) => t.name);
  assert.ok(inits.includes('lm_head.weight'));
  assert.ok(!inits.includes('model.embed_tokens.weight'));
});

test('imported tokenizer encodes like the source tokenizer and round-trips text', async () => {
  const ref = loadReference();
  const tokenizer = await HfTokenizer.load(modelDir);
  for (const p of ref.prompts) {
    assert.deepEqual(tokenizer.encode(p.text), p.input_ids, p.text);
    assert.equal(tokenizer.decode(p.input_ids), p.text);
  }
  const config = JSON.parse(await readFile(join(modelDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config['eos_token'], '<|endoftext|>');
  assert.equal(config['add_bos_token'], false);
  const rendered = tokenizer.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
  assert.equal(rendered, '<|user|>Hi\n<|assistant|>');
});

test('lm_head produces the logits output directly, so prefill can slice to the needed positions', async () => {
  const model = decodeModel(new Uint8Array(await readFile(join(modelDir, 'onnx', 'model.onnx'))));
  assert.equal(sliceLogits(model), true);
});

test('untied output.weight, default alignment, 4 query heads per KV head: logits match PyTorch within 1e-4', async () => {
  const ref = loadReference('untied');
  const dir = join(work, 'untied');
  await importGguf(GGUF_UNTIED_FIXTURE, dir, 'f32');
  const model = decodeModel(new Uint8Array(await readFile(join(dir, 'onnx', 'model.onnx'))));
  const inits = (model.graph?.initializer ?? []).map((t) => t.name);
  assert.ok(inits.includes('lm_head.weight') && inits.includes('model.embed_tokens.weight'));
  const info = await readModelInfo(dir);
  assert.equal(info.numKvHeads, 1);
  await assertMatchesReference(dir, ref);
});
