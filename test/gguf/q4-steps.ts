/** Shared by the q4 graph-rewrite tests: run a rewritten graph of the tiny GGUF fixture through the Engine. */
import { readFile } from 'node:fs/promises';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { loadReference } from './fixture.ts';

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
