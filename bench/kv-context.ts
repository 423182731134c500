/**
 * bench/kv-context — decode cost against context length, and how much of it is the KV cache copy:
 *   1. with --model: one batch-1 decode step (ms, median of --steps) after a past of 128 / 1k / 4k tokens;
 *   2. always: the same model shape's `present = Concat(past, new)` alone — one ONNX graph with a Concat per
 *      layer and K/V, as the exported decoder does — so the copy's share of the step is measured, not guessed.
 *
 *   npm run bench:kv-context -- [--model models/smollm2-135m-q4] [--threads 2] [--steps 8]
 *   (without --model: SmolLM2-135M's cache shape, 30 layers × 3 KV heads × 64)
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { readFile } from 'node:fs/promises';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { FLOAT, encodeModel, node, onnx, tensorValueInfo } from '../src/runtime/graph/onnx.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: { model: { type: 'string' }, threads: { type: 'string', default: '2' }, steps: { type: 'string', default: '8' }, contexts: { type: 'string', default: '128,1024,4096' } },
});
const threads = Number(args.threads);
const steps = Number(args.steps);
const contexts = args.contexts.split(',').map(Number);
const info = args.model ? await readModelInfo(resolve(args.model)) : undefined;
const shape = info ?? { numLayers: 30, numKvHeads: 3, headDim: 64, vocabSize: 49152 };
const opts = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 } as const;

function pastFeeds(len: number, prefix = 'past_key_values'): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < shape.numLayers; i++) for (const kind of ['key', 'value']) {
    feeds[`${prefix}.${i}.${kind}`] = new Tensor('float32', new Float32Array(shape.numKvHeads * len * shape.headDim).fill(0.01), [1, shape.numKvHeads, len, shape.headDim]);
  }
  return feeds;
}

/** One Concat per layer and K/V along the sequence axis: exactly the copies the decoder's presents make. */
function concatGraph(): Uint8Array {
  const inputs = [];
  const outputs = [];
  const nodes = [];
  for (let i = 0; i < shape.numLayers; i++) for (const kind of ['key', 'value']) {
    const p = `past_key_values.${i}.${kind}`;
    const n = `new.${i}.${kind}`;
    inputs.push(tensorValueInfo(p, FLOAT, [1, shape.numKvHeads, 'past', shape.headDim]), tensorValueInfo(n, FLOAT, [1, shape.numKvHeads, 1, shape.headDim]));
    outputs.push(tensorValueInfo(`present.${i}.${kind}`, FLOAT, [1, shape.numKvHeads, 'total', shape.headDim]));
    nodes.push(node('Concat', `concat.${i}.${kind}`, [p, n], [`present.${i}.${kind}`], [{ name: 'axis', type: 2, i: 2 }]));
  }
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'kv', input: inputs, output: outputs, node: nodes } }));
}

const concat = await InferenceSession.create(concatGraph(), opts);
const model = info ? await InferenceSession.create(new Uint8Array(await readFile(info.onnxPath)), opts) : undefined;
const results: { context: number; kvMB: number; concatMs: number; stepMs?: number }[] = [];
for (const len of contexts) {
  const past = pastFeeds(len);
  const newKv = pastFeeds(1, 'new');
  const cms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t = performance.now();
    await concat.run({ ...past, ...newKv });
    cms.push(performance.now() - t);
  }
  let stepMs: number | undefined;
  if (model) {
    const feeds = {
      ...past,
      input_ids: new Tensor('int64', BigInt64Array.from([42n]), [1, 1]),
      position_ids: new Tensor('int64', BigInt64Array.from([BigInt(len)]), [1, 1]),
      attention_mask: new Tensor('int64', new BigInt64Array(len + 1).fill(1n), [1, len + 1]),
    };
    const ms: number[] = [];
    for (let s = 0; s < steps; s++) {
      const t = performance.now();
      await model.run(feeds);
      ms.push(performance.now() - t);
    }
    stepMs = median(ms);
  }
  results.push({ context: len, kvMB: (2 * shape.numLayers * shape.numKvHeads * shape.headDim * len * 4) / 1e6, concatMs: median(cms), ...(stepMs !== undefined ? { stepMs } : {}) });
}
const w = [10, 12, 16, 16, 12];
console.log(`\nbench/kv-context — ${info?.id ?? 'SmolLM2-135M cache shape'}, ${threads} threads, median of ${steps} steps`);
console.log(row(['context', 'KV MB', 'Concat-only ms', 'decode step ms', 'copy share'], w));
for (const r of results) console.log(row([String(r.context), r.kvMB, r.concatMs, r.stepMs ?? Number.NaN, r.stepMs ? r.concatMs / r.stepMs : Number.NaN], w));
