/**
 * bench/scoring — what issue #11's features cost and save, side by side in one run (runtime level, no HTTP,
 * interleaved trials, medians and ranges):
 *   1. lm_head only where needed (graph/logits-slice.ts) vs the full-logits graph: a 128-token prefill
 *      (max_tokens 1) and a plain generation (8 → 64 tokens), i.e. requests that ask for nothing new;
 *   2. echo + logprobs scoring of a 128-token prompt (max_tokens 0, logprobs 1) vs the same prefill without
 *      prompt logprobs: the cost per prompt token;
 *   3. the sampler at a real vocabulary (49 152, SmolLM2's): the heap-based selection vs sorting the
 *      vocabulary (the previous implementation), per token.
 * Two runtimes in one process with one ORT thread each (as bench/adapters does).
 *
 *   npm run bench:scoring -- [--trials 9] [--model models/tiny-gpt2]
 */
import { parseArgs } from 'node:util';
import { loadRuntime, type Runtime } from '../src/runtime/index.ts';
import { tokenLogprob } from '../src/runtime/logprobs.ts';
import { Sampler, seededRandom } from '../src/runtime/sampler.ts';
import type { GenerationRequest } from '../src/runtime/types.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    trials: { type: 'string', default: '9' },
    threads: { type: 'string', default: '1' },
  },
});
const trials = Number(args.trials);
const load = (sliceLogits: boolean) =>
  loadRuntime({ modelDir: args.model, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: Number(args.threads), sliceLogits });
const sliced = await load(true);
const full = await load(false);

const text = 'ROMEO.\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun. '.repeat(8);
const long = sliced.tokenizer.encode(text).slice(0, 128);
const short = long.slice(0, 8);
const greedy = { temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true };

async function time(rt: Runtime, req: GenerationRequest): Promise<number> {
  const started = performance.now();
  const result = await rt.scheduler.submit(req).result;
  if (req.promptLogprobs !== undefined && result.promptLogprobs?.length !== req.promptIds.length) throw new Error('no prompt logprobs');
  return performance.now() - started;
}

const cases: [string, () => Promise<number>][] = [
  ['prefill 128 → 1, sliced', () => time(sliced, { promptIds: long, sampling: { ...greedy, maxTokens: 1 } })],
  ['prefill 128 → 1, full logits', () => time(full, { promptIds: long, sampling: { ...greedy, maxTokens: 1 } })],
  ['generate 8 → 64, sliced', () => time(sliced, { promptIds: short, sampling: { ...greedy, maxTokens: 64 } })],
  ['generate 8 → 64, full logits', () => time(full, { promptIds: short, sampling: { ...greedy, maxTokens: 64 } })],
  ['score 128 (echo, logprobs 1), sliced', () => time(sliced, { promptIds: long, sampling: { ...greedy, maxTokens: 0 }, promptLogprobs: 1 })],
  ['score 128 (echo, logprobs 5), sliced', () => time(sliced, { promptIds: long, sampling: { ...greedy, maxTokens: 0 }, promptLogprobs: 5 })],
];
const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
for (const [, run] of cases) await run(); // warm-up
for (let t = 0; t < trials; t++) for (const [name, run] of cases) samples.get(name)!.push(await run());
await sliced.close();
await full.close();

const W = [40, 10, 18, 10];
const med = (name: string) => median(samples.get(name)!);
const range = (name: string) => `${Math.min(...samples.get(name)!).toFixed(2)}–${Math.max(...samples.get(name)!).toFixed(2)}`;
console.log(`model ${args.model}, ${trials} trials, vocab ${sliced.model.vocabSize}, ORT threads ${args.threads}`);
console.log(row(['case', 'median ms', 'range ms', 'ratio'], W));
const ratio = (a: string, b: string) => med(a) / med(b);
for (const [name] of cases) {
  const base = name.endsWith('full logits') ? name.replace('full logits', 'sliced') : name.startsWith('score') ? 'prefill 128 → 1, sliced' : name;
  console.log(row([name, med(name), range(name), name === base ? '' : `${ratio(name, base).toFixed(3)}×`], W));
}
const perToken = (name: string) => ((med(name) - med('prefill 128 → 1, sliced')) * 1000) / (long.length - 1);
console.log(`echo + logprobs 1 scoring: ${perToken('score 128 (echo, logprobs 1), sliced').toFixed(1)} µs per prompt token over a plain prefill`);
console.log(`echo + logprobs 5 scoring: ${perToken('score 128 (echo, logprobs 5), sliced').toFixed(1)} µs per prompt token over a plain prefill`);

// 3. Sampler at a 49 152 vocabulary: the heap-based code vs the previous full sort (kept here as the reference).
const V = 49152;
const r = seededRandom(5);
const logits = Float32Array.from({ length: V }, () => 8 * (r() + r() + r() - 1.5));
function sortAll(l: Float32Array): number[] {
  const ids = Array.from({ length: l.length }, (_, i) => i);
  return ids.sort((a, b) => l[b]! - l[a]! || a - b);
}
const reps = 40;
const perCall = (fn: () => unknown) => {
  const xs: number[] = [];
  for (let t = 0; t < 5; t++) {
    const s = performance.now();
    for (let i = 0; i < reps; i++) fn();
    xs.push(((performance.now() - s) * 1000) / reps);
  }
  return median(xs);
};
const samplerCases: [string, () => unknown, () => unknown][] = [
  ['top_k 50', () => new Sampler({ temperature: 1, topK: 50, topP: 1, seed: 1 }).next(logits), () => sortAll(logits).slice(0, 50)],
  ['top_p 0.9', () => new Sampler({ temperature: 1, topK: 0, topP: 0.9, seed: 1 }).next(logits), () => sortAll(logits)],
  ['temperature only', () => new Sampler({ temperature: 1, topK: 0, topP: 1, seed: 1 }).next(logits), () => sortAll(logits)],
  ['logprobs top 5', () => tokenLogprob(logits, 3, 5), () => sortAll(logits).slice(0, 5)],
];
console.log(`\nsampler, vocab ${V} (µs per token, median of 5×${reps})`);
console.log(row(['case', 'heap µs', 'full sort µs', 'sort/heap'], [20, 10, 14, 10]));
for (const [name, heap, sort] of samplerCases) {
  const h = perCall(heap);
  const s = perCall(sort);
  console.log(row([name, h, s, `${(s / h).toFixed(1)}×`], [20, 10, 14, 10]));
}
