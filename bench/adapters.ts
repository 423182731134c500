/**
 * bench/adapters — what per-request adapters cost on the delta path, measured side by side in one run
 * (runtime level, no HTTP, tiny-gpt2, interleaved trials, medians):
 *   1. decode latency of a rank-16 LoRA on q,v (GPT-2's fused c_attn) and on all linear layers vs the base,
 *      at batch 1 and with 8 concurrent requests (target: q,v ≤ 1.10×);
 *   2. 8 concurrent requests using 8 different adapters vs 8 using the same one (target ≥ 0.8×);
 * S²FT vs LoRA attach cost for the same number of trainable parameters is bench/adapter-attach.ts.
 * The adapters are random factors of the right shapes: speed does not depend on their values.
 *
 *   npm run bench:adapters -- [--tokens 48] [--trials 5] [--threads 1]
 */
import { parseArgs } from 'node:util';
import { compileLora } from '../src/adapters/lora.ts';
import { loadRuntime } from '../src/runtime/index.ts';
import { seededRandom } from '../src/runtime/sampler.ts';
import type { DeltaBinding, LayerFactors } from '../src/runtime/types.ts';
import type { DeltaLayer } from '../src/runtime/delta-feeds.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    tokens: { type: 'string', default: '48' },
    trials: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1' },
  },
});
const tokens = Number(args.tokens);
const trials = Number(args.trials);
const rank = 16;

// Two servers' worth of runtimes: branches on every linear layer (the default, every PEFT adapter attaches)
// and on attention only (enough for q,v adapters). Both keep the plain session for base-only steps.
// One ORT thread each: idle intra-op pools spin, and two runtimes in one process would steal each other's cores.
const load = (deltaSelection: 'all-linear' | 'attention') =>
  loadRuntime({ modelDir: args.model, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: Number(args.threads), deltaSelection });
const rt = await load('all-linear');
const rtAttention = await load('attention');
const layers = rt.deltaLayers;
const qv = layers.filter((l) => /attn\.c_attn$|self_attn\.(q|v)_proj$/.test(l.name));

const uniform = seededRandom(1);
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => (uniform() * 2 - 1) * scale);
const lora = (l: DeltaLayer, r: number): LayerFactors =>
  compileLora(random(r * l.dIn, 0.05), random(l.dOut * r, 0.05), r, l.dIn, l.dOut, 2);
const binding = (key: string, targets: readonly DeltaLayer[], r = rank): DeltaBinding => ({
  key,
  layers: new Map(targets.map((l) => [l.name, lora(l, r)])),
});

const prompts = ['ROMEO.\nBut soft,', 'HAMLET.\nTo be', 'The capital of Veldor is', 'KING LEAR.\nBlow', 'PORTIA.\nThe quality',
  'MACBETH.\nIs this', 'JULIET.\nO Romeo', 'PUCK.\nIf we shadows'].map((p) => rt.tokenizer.encode(p));
const run = async (deltas: readonly (DeltaBinding | undefined)[], runtime = rt): Promise<number> => {
  const started = performance.now();
  await Promise.all(deltas.map((delta, i) => runtime.scheduler.submit({
    promptIds: prompts[i % prompts.length]!,
    sampling: { maxTokens: tokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true },
    ...(delta ? { delta } : {}),
  }).result));
  return performance.now() - started;
};

// ignoreEos: every request generates exactly `tokens` tokens, whatever the adapter makes of it.
const qvOne = binding('qv', qv);
const allOne = binding('all', layers);
const qvMany = Array.from({ length: 8 }, (_, i) => binding(`qv${i}`, qv));
const allMany = Array.from({ length: 8 }, (_, i) => binding(`all${i}`, layers));
// An adapter with no layers still routes its row through the branch graph: "base on the delta graph".
const empty: DeltaBinding = { key: 'empty', layers: new Map() };
type Case = { deltas: readonly (DeltaBinding | undefined)[]; runtime?: typeof rt };
const cases: Record<string, Case> = {
  'base b1 (plain graph)': { deltas: [undefined] },
  'base b1 on all-linear branches, r=0': { deltas: [empty] },
  'lora q,v r16 b1, all-linear branches': { deltas: [qvOne] },
  'lora q,v r16 b1, attention branches': { deltas: [qvOne], runtime: rtAttention },
  'lora all-linear r16 b1': { deltas: [allOne] },
  'base b8 (plain graph)': { deltas: Array(8).fill(undefined) },
  'base b8 on all-linear branches, r=0': { deltas: Array(8).fill(empty) },
  'lora q,v r16 b8 same, all-linear branches': { deltas: Array(8).fill(qvOne) },
  'lora q,v r16 b8 same, attention branches': { deltas: Array(8).fill(qvOne), runtime: rtAttention },
  'lora q,v r16 b8 mixed, all-linear branches': { deltas: qvMany },
  'lora all-linear r16 b8 same': { deltas: Array(8).fill(allOne) },
  'lora all-linear r16 b8 mixed': { deltas: allMany },
};
const ms: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (const c of Object.values(cases)) await run(c.deltas, c.runtime); // warm-up
for (let t = 0; t < trials; t++) for (const [name, c] of Object.entries(cases)) ms[name]!.push(await run(c.deltas, c.runtime));
const m = (k: string) => median(ms[k]!);

await rt.close();
await rtAttention.close();

const w = [46, 12, 14, 14];
console.log(`\nbench/adapters — ${rt.model.id}, ${tokens} new tokens per request, ${trials} trials, rank ${rank}, branches on ${layers.length} layers`);
console.log(row(['case', 'median ms', 'vs plain base', 'vs r=0 base'], w));
for (const name of Object.keys(cases)) {
  const b = name.includes('b8') ? 'b8' : 'b1';
  const plain = m(`base ${b} (plain graph)`);
  const branched = m(`base ${b} on all-linear branches, r=0`);
  console.log(row([name, m(name), m(name) / plain, name.includes('attention') ? '' : m(name) / branched], w));
}
console.log(row(['throughput mixed / same, q,v (target ≥ 0.8)', '', m('lora q,v r16 b8 same, all-linear branches') / m('lora q,v r16 b8 mixed, all-linear branches'), ''], w));
console.log(row(['throughput mixed / same, all-linear', '', m('lora all-linear r16 b8 same') / m('lora all-linear r16 b8 mixed'), ''], w));
