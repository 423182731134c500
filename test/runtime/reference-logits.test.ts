import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { loadRuntime, type GenerationResult } from '../../src/runtime/index.ts';
import { maxAbsDiff } from '../helpers/logits.ts';

/** Written by tools/make_fixtures.py from the Hugging Face transformers model (PyTorch, float32). */
interface Reference {
  tolerance: number;
  source: string;
  prompts: Array<{
    text: string;
    input_ids: number[];
    last_logits: number[];
    decode_steps: Array<{ token: number; position: number; logits: number[] }>;
    greedy: { new_token_ids: number[]; stopped_at_eos: boolean; text: string };
  }>;
  all_position_logits: { prompt_index: number; logits: number[][] };
  chat_template_example: { messages: Array<{ role: string; content: string }>; rendered: string; input_ids: number[] };
}


for (const name of ['tiny-gpt2', 'tiny-llama']) {
  const modelDir = `models/${name}`;
  const fixture = `test/fixtures/${name}/reference.json`;

  test(`${name}: logits match the PyTorch reference (prefill, padded batch, KV-cache decode)`, async () => {
    assert.ok(existsSync(fixture), `missing ${fixture}: run tools/build_all.sh`);
    const ref = JSON.parse(await readFile(fixture, 'utf8')) as Reference;
    const info = await readModelInfo(modelDir);
    const session = await createSession(new Uint8Array(await readFile(info.onnxPath)), { device: 'cpu', threads: 1 });
    const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    const tol = ref.tolerance;
    assert.ok(tol <= 1e-4);

    // All prompts in one left-padded batch: each row must equal its reference exactly as if alone.
    const prompts = ref.prompts.map((p) => p.input_ids);
    let step = await engine.forward(BatchKv.empty(info, prompts.length), prompts, {});
    ref.prompts.forEach((p, b) => {
      const diff = maxAbsDiff(step.logits[b]!, p.last_logits);
      assert.ok(diff <= tol, `${name} prompt ${b} last-position logits differ by ${diff}`);
    });

    // Every position of the first prompt, read from the padded batch.
    const all = ref.all_position_logits;
    const pad = step.width - prompts[all.prompt_index]!.length;
    all.logits.forEach((expected, pos) => {
      const offset = ((all.prompt_index * step.width) + pad + pos) * info.vocabSize;
      const diff = maxAbsDiff(step.allLogits.subarray(offset, offset + info.vocabSize), expected);
      assert.ok(diff <= tol, `${name} position ${pos} differs by ${diff}`);
    });

    // Decode steps through the batch KV cache, all rows together: step s feeds decode_steps[s].token at
    // decode_steps[s].position and must give decode_steps[s].logits.
    for (let s = 0; s < ref.prompts[0]!.decode_steps.length; s++) {
      ref.prompts.forEach((p, b) => assert.equal(p.decode_steps[s]!.position, step.kv.lens[b]));
      step = await engine.forward(step.kv, ref.prompts.map((p) => [p.decode_steps[s]!.token]), {});
      ref.prompts.forEach((p, b) => {
        const diff = maxAbsDiff(step.logits[b]!, p.decode_steps[s]!.logits);
        assert.ok(diff <= tol, `${name} prompt ${b} decode step ${s} differs by ${diff}`);
      });
    }
    await session.release();
  });

  test(`${name}: tokenizer and chat template agree with Hugging Face`, async () => {
    const ref = JSON.parse(await readFile(fixture, 'utf8')) as Reference;
    const tokenizer = await HfTokenizer.load(modelDir);
    for (const p of ref.prompts) assert.deepEqual(tokenizer.encode(p.text), p.input_ids);
    const chat = ref.chat_template_example;
    const rendered = tokenizer.applyChatTemplate(chat.messages);
    assert.equal(rendered, chat.rendered);
    assert.deepEqual(tokenizer.encode(rendered), chat.input_ids);
  });

  test(`${name}: greedy generation equals transformers generate(), alone and in a concurrent batch`, async () => {
    const ref = JSON.parse(await readFile(fixture, 'utf8')) as Reference;
    const rt = await loadRuntime({ modelDir, device: 'cpu', maxBatch: 8, maxQueue: 16, threads: 1 });
    const run = (p: Reference['prompts'][number]) =>
      rt.scheduler.submit({
        promptIds: p.input_ids,
        sampling: { maxTokens: p.greedy.new_token_ids.length, temperature: 0, topP: 1, topK: 0, stop: [] },
      }).result;
    const alone: GenerationResult[] = [];
    for (const p of ref.prompts) alone.push(await run(p));
    const together = await Promise.all(ref.prompts.map(run));
    ref.prompts.forEach((p, i) => {
      assert.deepEqual(alone[i]!.tokenIds, p.greedy.new_token_ids, `${name} prompt ${i} alone`);
      assert.deepEqual(together[i]!.tokenIds, p.greedy.new_token_ids, `${name} prompt ${i} batched`);
      assert.equal(alone[i]!.text, together[i]!.text);
      if (!p.greedy.stopped_at_eos) assert.equal(alone[i]!.text, p.greedy.text, `${name} prompt ${i} text`);
    });
    await rt.close();
  });
}
