/** Shared by the GGUF import tests: run an imported (or rewritten) graph of a tiny GGUF fixture through the Engine. */
import { readFile } from 'node:fs/promises';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import assert from 'node:assert/strict';
import { loadReference, type GgufReference } from './fixture.ts';

/** The model of `dir` with the runtime's logits slice applied, as the served plain graph. */
export async function sliced(dir: string) {
  const model = decodeModel(new Uint8Array(await readFile((await readModelInfo(dir)).onnxPath)));
  sliceLogits(model);
  return model;
}

/** Prefill of every reference prompt (one batch), then 3 decode steps; logits of each row, and the graphs that ran. */
export async function runSteps(dir: string, plain: Uint8Array, wide?: Uint8Array, rowsOf = loadReference().prompts.length, wideCountsTokens = false) {
  const info = await readModelInfo(dir);
  const opts = { device: 'cpu' as const, threads: 1 };
  const engine = new Engine({
    session: await createSession(plain, opts),
    ...(wide ? { wideSession: await createSession(wide, opts), wideCountsTokens } : {}),
    shape: info,
    vocabSize: info.vocabSize,
    baseVersion: 0,
  });
  try {
    const prompts = loadReference().prompts.map((p) => p.input_ids).slice(0, rowsOf);
    const out: Float32Array[] = [];
    const graphs: string[] = [];
    let step = await engine.forward(engine.emptyKv(prompts.length), prompts);
    out.push(...step.logits);
    graphs.push(step.graph);
    for (let s = 0; s < 3; s++) {
      step = await engine.forward(step.kv, prompts.map((_, b) => [(s * 7 + b) % info.vocabSize]));
      out.push(...step.logits);
      graphs.push(step.graph);
    }
    return { out, graphs };
  } finally {
    await engine.release();
  }
}

/** The largest |Δlogit| between two lists of logit rows. */
export const worst = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((x, i) => maxAbsDiff(x, Array.from(b[i]!))));

/**
 * The imported model in `dir` against its PyTorch reference: a padded prefill of every prompt, then the reference's
 * decode steps, each row's logits within `tolerance` (default: the reference's own).
 */
export async function assertMatchesReference(dir: string, ref: GgufReference, tolerance = ref.tolerance): Promise<void> {
  const info = await readModelInfo(dir);
  const session = await createSession(new Uint8Array(await readFile(info.onnxPath)), { device: 'cpu', threads: 1 });
  try {
    const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    let step = await engine.forward(engine.emptyKv(ref.prompts.length), ref.prompts.map((p) => p.input_ids), {});
    ref.prompts.forEach((p, b) => {
      const diff = maxAbsDiff(step.logits[b]!, p.last_logits);
      assert.ok(diff <= tolerance, `prompt ${b} last logits differ by ${diff}`);
    });
    for (let s = 0; s < ref.prompts[0]!.decode_steps.length; s++) {
      step = await engine.forward(step.kv, ref.prompts.map((p) => [p.decode_steps[s]!.token]), {});
      ref.prompts.forEach((p, b) => {
        const diff = maxAbsDiff(step.logits[b]!, p.decode_steps[s]!.logits);
        assert.ok(diff <= tolerance, `prompt ${b} decode step ${s} differs by ${diff}`);
      });
    }
  } finally {
    await session.release();
  }
}
