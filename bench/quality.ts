/**
 * bench/quality — what the exact-4-bit import costs in answers, on SmolLM2 (needs the imported models):
 *
 *   - greedy answers (chat template, ≤ 32 tokens, stop at EOS) to the 20 prompts of
 *     bench/fixtures/chat-prompts.json from Patchbay f32, q4 at accuracy_level 0 and 4, and llama.cpp on the
 *     same GGUF, each compared with PyTorch's greedy answers on the dequantized GGUF weights
 *     (bench/fixtures/smollm2-pytorch-greedy.json, tools/smollm2_reference.py): exact matches and the mean
 *     length of the common token prefix;
 *     Also the wide session's float32 form (PATCHBAY_WIDE_SESSION=f32) with all 20 prompts decoded as one
 *     batch (left-padded prefill, every step ≥ 2 rows, so every step runs on the wide session);
 *   - teacher-forced along PyTorch's answers: top-1 agreement with the f32 graph and mean KL(p_f32 ‖ p_q4)
 *     per token (nats), for q4 at accuracy_level 0 and 4.
 *
 *   npm run bench:quality -- --model models/smollm2-135m --q4-model models/smollm2-135m-q4 --gguf <file.gguf>
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { readModelInfo, type ModelInfo } from '../src/runtime/model-config.ts';
import { Engine } from '../src/runtime/engine.ts';
import { HfTokenizer } from '../src/runtime/tokenizer.ts';
import { argmax } from '../src/runtime/sampler.ts';
import { withNBitsAccuracy } from '../src/runtime/graph/index.ts';
import { decodeModel, encodeModel } from '../src/runtime/graph/onnx.ts';
import { dequantizeNBitsLayers } from '../src/runtime/graph/nbits-dequantize.ts';
import { LlamaCppLoop } from './lib/llama-cpp.ts';
import { row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m' },
    'q4-model': { type: 'string', default: 'models/smollm2-135m-q4' },
    gguf: { type: 'string' },
    threads: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '32' },
  },
});
const threads = Number(args.threads);
const maxNew = Number(args.tokens);
const f32 = await readModelInfo(resolve(args.model));
const q4 = await readModelInfo(resolve(args['q4-model']));
const tokenizer = await HfTokenizer.load(f32.dir);
const reference = JSON.parse(await readFile('bench/fixtures/smollm2-pytorch-greedy.json', 'utf8')) as { prompt: string; ids: number[]; text: string }[];
const eos = new Set(f32.eosTokenIds);

async function session(bytes: Uint8Array): Promise<InferenceSession> {
  return InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 });
}

/** One run over `ids` with an empty cache (either graph form takes a zero-width past): logits [ids.length, vocab]. */
async function forward(s: InferenceSession, m: ModelInfo, ids: number[]) {
  const feeds: Record<string, Tensor> = {
    input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
    position_ids: new Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(i)), [1, ids.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  };
  for (let i = 0; i < m.numLayers; i++) for (const kind of ['key', 'value']) {
    feeds[`past_key_values.${i}.${kind}`] = new Tensor('float32', new Float32Array(0), [1, m.numKvHeads, 0, m.headDim]);
  }
  const out = await s.run(feeds, ['logits']);
  return { logits: out['logits']!.data as Float32Array };
}

/** Greedy decoding through the runtime's Engine, which feeds either cache form (runtime/kv-layout.ts). */
async function greedy(s: InferenceSession, m: ModelInfo, prompt: number[]): Promise<number[]> {
  const engine = new Engine({ session: s, shape: m, vocabSize: m.vocabSize, baseVersion: 0, contextLength: m.contextLength });
  let step = await engine.forward(engine.emptyKv(1), [prompt]);
  const ids: number[] = [];
  for (;;) {
    const next = argmax(step.logits[0]!);
    if (eos.has(next) || ids.length >= maxNew) return ids;
    ids.push(next);
    step = await engine.forward(step.kv, [[next]]);
  }
}

/**
 * Greedy decoding of every prompt in one batch on an engine with a wide session: rows that finished keep being
 * fed (their extra tokens are dropped), so the batch stays `prompts.length` rows and every step is wide.
 */
async function greedyBatch(plain: InferenceSession, wide: InferenceSession, m: ModelInfo, batch: number[][]): Promise<number[][]> {
  const engine = new Engine({ session: plain, wideSession: wide, shape: m, vocabSize: m.vocabSize, baseVersion: 0, contextLength: m.contextLength });
  let step = await engine.forward(engine.emptyKv(batch.length), batch);
  const outs = batch.map(() => [] as number[]);
  const done = batch.map(() => false);
  for (let t = 0; ; t++) {
    if (step.graph !== 'wide') throw new Error(`step ${t} ran on the ${step.graph} graph, not the wide session`);
    const next = step.logits.map((l) => argmax(l));
    next.forEach((id, b) => {
      if (done[b] || eos.has(id) || outs[b]!.length >= maxNew) done[b] = true;
      else outs[b]!.push(id);
    });
    if (done.every(Boolean)) return outs;
    step = await engine.forward(step.kv, next.map((id) => [id]));
  }
}

function logSoftmax(x: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  let sum = 0;
  for (const v of x) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(x, (v) => v - lse);
}

const prefix = (a: number[], b: number[]) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

const prompts = reference.map((r) => tokenizer.encode(tokenizer.applyChatTemplate([{ role: 'user', content: r.prompt }])));
const q4Bytes = new Uint8Array(await readFile(q4.onnxPath));
const contenders: [string, InferenceSession, ModelInfo][] = [
  ['Patchbay f32', await session(new Uint8Array(await readFile(f32.onnxPath))), f32],
  ['Patchbay q4, accuracy_level 0', await session(withNBitsAccuracy(q4Bytes, 0)), q4],
  ['Patchbay q4, accuracy_level 4', await session(withNBitsAccuracy(q4Bytes, 4)), q4],
];

const answers: Record<string, number[][]> = {};
for (const [name, s, m] of contenders) answers[name] = await Promise.all(prompts.map((p) => greedy(s, m, p)));
{
  const wideModel = decodeModel(withNBitsAccuracy(q4Bytes, 0));
  dequantizeNBitsLayers(wideModel);
  const wide = await session(encodeModel(wideModel));
  answers['Patchbay q4 + wide f32, one batch'] = await greedyBatch(contenders[1]![1], wide, q4, prompts);
  await wide.release();
}
if (args.gguf) {
  const llama = await LlamaCppLoop.create(resolve(args.gguf), threads, 1);
  const outs: number[][] = [];
  for (const p of prompts) {
    const ids = (await llama.generate([p as never[]], maxNew))[0]! as number[];
    const stop = ids.findIndex((t) => eos.has(t));
    outs.push(stop < 0 ? ids : ids.slice(0, stop));
  }
  answers['llama.cpp (same GGUF)'] = outs;
  await llama.dispose();
}

// Teacher-forced along PyTorch's answers: q4 vs f32 per answer position.
const [, f32Session] = contenders[0]!;
const agreement: Record<string, { top1: number; kl: number; n: number }> = {};
for (let i = 0; i < prompts.length; i++) {
  const ids = [...prompts[i]!, ...reference[i]!.ids];
  const from = prompts[i]!.length - 1; // logits at position t predict token t + 1
  const base = (await forward(f32Session, f32, ids)).logits;
  for (const [name, s, m] of contenders.slice(1)) {
    const q = (await forward(s, m, ids)).logits;
    const acc = (agreement[name] ??= { top1: 0, kl: 0, n: 0 });
    for (let t = from; t < ids.length - 1; t++) {
      const p = base.subarray(t * f32.vocabSize, (t + 1) * f32.vocabSize);
      const r = q.subarray(t * q4.vocabSize, (t + 1) * q4.vocabSize);
      const lp = logSoftmax(p);
      const lq = logSoftmax(r);
      let kl = 0;
      for (let v = 0; v < lp.length; v++) kl += Math.exp(lp[v]!) * (lp[v]! - lq[v]!);
      acc.kl += kl;
      acc.top1 += argmax(p) === argmax(r) ? 1 : 0;
      acc.n += 1;
    }
  }
}

const results = {
  prompts: reference.length,
  maxNewTokens: maxNew,
  vsPyTorch: Object.fromEntries(
    Object.entries(answers).map(([name, outs]) => [
      name,
      {
        exactMatches: outs.filter((o, i) => o.length === reference[i]!.ids.length && prefix(o, reference[i]!.ids) === o.length).length,
        meanCommonPrefixTokens: outs.reduce((n, o, i) => n + prefix(o, reference[i]!.ids), 0) / outs.length,
        meanReferenceTokens: reference.reduce((n, r) => n + r.ids.length, 0) / reference.length,
      },
    ]),
  ),
  vsF32TeacherForced: Object.fromEntries(Object.entries(agreement).map(([k, a]) => [k, { top1Agreement: a.top1 / a.n, meanKlNats: a.kl / a.n, tokens: a.n }])),
  samples: reference.slice(0, 3).map((r, i) => ({ prompt: r.prompt, pytorch: r.text, ...Object.fromEntries(Object.entries(answers).map(([k, o]) => [k, tokenizer.decode(o[i]!)])) })),
};
const w = [40, 14, 14];
console.log(`\nbench/quality — ${f32.id} vs ${q4.id}, ${reference.length} chat prompts, ≤ ${maxNew} greedy tokens`);
console.log(row(['greedy answers vs PyTorch (dequantized)', 'exact', 'mean prefix'], w));
for (const [k, v] of Object.entries(results.vsPyTorch)) console.log(row([k, `${v.exactMatches}/${reference.length}`, v.meanCommonPrefixTokens], w));
console.log(row(['teacher-forced vs f32', 'top-1 agree', 'KL (nats)'], w));
for (const [k, v] of Object.entries(results.vsF32TeacherForced)) console.log(row([k, v.top1Agreement, v.meanKlNats], w));
await mkdir('bench/out', { recursive: true });
await writeFile('bench/out/quality.json', JSON.stringify(results, null, 2));
