/**
 * The logits-slice rewrite (graph/logits-slice.ts) on both model families: the last position only by
 * default, any trailing span on request, each equal to the PyTorch reference within its tolerance.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { BatchKv } from '../../src/runtime/batch-kv.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { decodeModel, encodeModel } from '../../src/runtime/graph/onnx.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { maxAbsDiff } from '../helpers/logits.ts';

interface Reference {
  tolerance: number;
  prompts: { input_ids: number[]; last_logits: number[] }[];
  all_position_logits: { prompt_index: number; logits: number[][] };
}

for (const name of ['tiny-gpt2', 'tiny-llama']) {
  test(`${name}: sliced graph gives the last position by default and all positions on request`, async () => {
    const ref = JSON.parse(await readFile(`test/fixtures/${name}/reference.json`, 'utf8')) as Reference;
    const info = await readModelInfo(`models/${name}`);
    const proto = decodeModel(new Uint8Array(await readFile(info.onnxPath)));
    assert.equal(sliceLogits(proto), true);
    const session = await createSession(encodeModel(proto), { device: 'cpu', threads: 1 });
    const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    const prompts = ref.prompts.map((p) => p.input_ids);
    const width = Math.max(...prompts.map((p) => p.length));

    const last = await engine.forward(BatchKv.empty(info, prompts.length), prompts, {});
    assert.equal(last.logitsWidth, 1);
    assert.equal(last.allLogits.length, prompts.length * info.vocabSize);
    ref.prompts.forEach((p, b) => assert.ok(maxAbsDiff(last.logits[b]!, p.last_logits) <= ref.tolerance, `${name} row ${b}`));

    const full = await engine.forward(BatchKv.empty(info, prompts.length), prompts, {}, { tail: width });
    assert.equal(full.logitsWidth, width);
    const all = ref.all_position_logits;
    const len = prompts[all.prompt_index]!.length;
    all.logits.forEach((expected, pos) => {
      const at = (all.prompt_index * width + (width - len) + pos) * info.vocabSize;
      const diff = maxAbsDiff(full.allLogits.subarray(at, at + info.vocabSize), expected);
      assert.ok(diff <= ref.tolerance, `${name} position ${pos}: ${diff}`);
    });
    await session.release();
  });
}
