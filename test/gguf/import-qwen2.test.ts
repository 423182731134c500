/**
 * Qwen2 GGUFs (tools/make_gguf_fixture.py `tiny-qwen2`): the Llama graph plus q/k/v biases, Q/K rows kept in HF's
 * order (llama.cpp permutes only Llama's), the `qwen2` pre-tokenizer. Reference: transformers Qwen2ForCausalLM on
 * the dequantized weights (transformers' own GGUF loader reads the same weights back, checked by the tool).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { findLinearLayers } from '../../src/runtime/graph/index.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { GGUF_QWEN2_FIXTURE, loadReference } from './fixture.ts';
import { assertMatchesReference } from './q4-steps.ts';

let work: string;
const dirs: Record<string, string> = {};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-gguf-qwen2-'));
  for (const mode of ['f32', 'q4'] as const) {
    dirs[mode] = join(work, mode);
    await importGguf(GGUF_QWEN2_FIXTURE, dirs[mode]!, mode, { accuracyLevel: 0 });
  }
});
after(async () => rm(work, { recursive: true, force: true }));

test('a Qwen2 GGUF imports (f32 and exact q4) with logits equal to PyTorch within 1e-4', async () => {
  const ref = loadReference('qwen2');
  assert.ok(ref.tolerance <= 1e-4);
  for (const dir of Object.values(dirs)) {
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config['model_type'], 'qwen2');
    assert.equal((await readModelInfo(dir)).numKvHeads, 2);
    await assertMatchesReference(dir, ref);
  }
});

test('the biases are the layers\' own (adapter branches attach after them) and only q/k/v have one', async () => {
  for (const dir of Object.values(dirs)) {
    const layers = findLinearLayers(decodeModel(new Uint8Array(await readFile(join(dir, 'onnx', 'model.onnx')))));
    const q = layers.find((l) => l.name === 'model.layers.0.self_attn.q_proj')!;
    assert.equal(q.biasName, 'model.layers.0.self_attn.q_proj.bias', dir);
    assert.equal(layers.find((l) => l.name === 'model.layers.0.self_attn.o_proj')!.biasName, undefined);
  }
});

test('the qwen2 pre-tokenizer is used and the reference prompts encode to their ids', async () => {
  const json = JSON.parse(await readFile(join(dirs.f32!, 'tokenizer.json'), 'utf8')) as { pre_tokenizer: { pretokenizers: { pattern?: { Regex: string } }[] } };
  assert.ok(json.pre_tokenizer.pretokenizers[0]!.pattern!.Regex.includes('\\p{N}|'), 'single digits');
  const tokenizer = await HfTokenizer.load(dirs.f32!);
  for (const p of loadReference('qwen2').prompts) assert.deepEqual(tokenizer.encode(p.text), p.input_ids, p.text);
  assert.deepEqual(tokenizer.encode('1969').length, 4, 'digits one by one');
});
