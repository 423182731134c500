/**
 * bench/adapters — what per-request adapters cost on the delta path, measured side by side in one run
 * (runtime level, no HTTP, tiny-gpt2, interleaved trials, medians):
 *   1. decode latency of a rank-16 LoRA on q,v (GPT-2's fused c_attn) and on all linear layers vs the base,
 *      at batch 1 and with 8 concurrent requests (target: q,v ≤ 1.10×);
 *   2. 8 concurrent requests using 8 different adapters vs 8 using the same one (target ≥ 0.8×);
 *   3. S²FT vs LoRA attach cost (files → factors) and decode cost for the same number of trainable params.
 * The adapters are random factors of the right shapes: speed does not depend on their values.
 *
 *   npm run bench:adapters -- [--tokens 48] [--trials 5] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { compileLora } from '../src/adapters/lora.ts';
import { compileS2ft } from '../src/adapters/s2ft.ts';
import { loadRuntime } from '../src/runtime/index.ts';
import type { DeltaBinding, LayerFactors } from '../src/runtime/types.ts';
import type { DeltaLayer } from '../src/runtime/delta-feeds.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    tokens: { type: 'string', default: '48' },
    trials: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
  },
});
const tokens = Number(args.tokens);
const trials = Number(args.trials);
const rank = 16;

const rt = await loadRuntime({ modelDir: args.model, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: Number(args.threads), deltaSelection: 'all-linear' });
const layers = rt.deltaLayers;
const qv = layers.filter((l) => /attn\.c_attn$|self_attn\.(q|v)_proj$/.test(l.name));

let seed = 1;
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => {
  seed = (seed * 16807) % 2147483647;
  return ((seed / 2147483647) * 2 - 1) * scale;
});
const lora = (l: DeltaLayer, r: number): LayerFactors =>
  compileLora(random(r * l.dIn, 0.05), random(l.dOut * r, 0.05), r, l.dIn, l.dOut, 2);
const binding = (key: string, targets: readonly DeltaLayer[], r = rank): DeltaBinding => ({
  key,
  layers: new Map(targets.map((l) => [l.name, lora(l, r)])),
});

const prompts = ['ROMEO.\nBut soft,', 'HAMLET.\nTo be', 'The capital of Veldor is', 'KING LEAR.\nBlow', 'PORTIA.\nThe quality',
  'MACBETH.\nIs this', 'JULIET.\nO Romeo', 'PUCK.\nIf we shadows'].map((p) => rt.tokenizer.encode(p));
const run = async (deltas: readonly (DeltaBinding | undefined)[]): Promise<number> => {
  const started = performance.now();
  await Promise.all(deltas.map((delta, i) => rt.scheduler.submit({
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
const cases: Record<string, readonly (DeltaBinding | undefined)[]> = {
  'base b1': [undefined],
  'lora q,v r16 b1': [qvOne],
  'lora all-linear r16 b1': [allOne],
  'base b8': Array(8).fill(undefined),
  'lora q,v r16 b8 same': Array(8).fill(qvOne),
  'lora q,v r16 b8 mixed': qvMany,
  'lora all-linear r16 b8 same': Array(8).fill(allOne),
  'lora all-linear r16 b8 mixed': allMany,
};
const ms: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (const deltas of Object.values(cases)) await run(deltas); // warm-up
for (let t = 0; t < trials; t++) for (const [name, deltas] of Object.entries(cases)) ms[name]!.push(await run(deltas));
const m = (k: string) => median(ms[k]!);

// S²FT vs LoRA with the same trainable parameters per layer: LoRA r·(d_in + d_out) = S²FT k·d_in (output side).
const c = layers.find((l) => l.name.endsWith('mlp.c_fc')) ?? layers[0]!;
const k = Math.round((rank * (c.dIn + c.dOut)) / c.dIn);
const idx = Int32Array.from({ length: k }, (_, j) => (j * 7) % c.dOut);
const attach = (fn: () => unknown) => {
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const s = performance.now();
    fn();
    times.push(performance.now() - s);
  }
  return median(times);
};
const A = random(rank * c.dIn, 0.05);
const B = random(c.dOut * rank, 0.05);
const S = random(k * c.dIn, 0.05);
const loraAttach = attach(() => compileLora(A, B, rank, c.dIn, c.dOut, 2));
const s2ftAttach = attach(() => compileS2ft('output', idx, S, c.dIn, c.dOut));
const s2ftBinding: DeltaBinding = { key: 's2ft', layers: new Map([[c.name, compileS2ft('output', idx, S, c.dIn, c.dOut)]]) };
const loraBinding: DeltaBinding = { key: 'lora', layers: new Map([[c.name, compileLora(A, B, rank, c.dIn, c.dOut, 2)]]) };
const decode = { s2ft: [] as number[], lora: [] as number[] };
for (let t = 0; t < trials; t++) {
  decode.lora.push(await run([loraBinding]));
  decode.s2ft.push(await run([s2ftBinding]));
}
await rt.close();

const w = [44, 12, 10];
console.log(`\nbench/adapters — ${rt.model.id}, ${tokens} new tokens per request, ${trials} trials, rank ${rank}, branches on ${layers.length} layers`);
console.log(row(['case', 'median ms', 'ratio'], w));
for (const name of Object.keys(cases)) {
  const base = name.includes('b8') ? m('base b8') : m('base b1');
  console.log(row([name, m(name), m(name) / base], w));
}
console.log(row(['mixed / same, q,v (target ≥ 0.8 as throughput)', '', m('lora q,v r16 b8 same') / m('lora q,v r16 b8 mixed')], w));
console.log(row(['mixed / same, all-linear', '', m('lora all-linear r16 b8 same') / m('lora all-linear r16 b8 mixed')], w));
console.log(`\nS²FT vs LoRA on ${c.name} [${c.dIn}→${c.dOut}], ${rank * (c.dIn + c.dOut)} vs ${k * c.dIn} trainable params (LoRA r=${rank}, S²FT k=${k})`);
console.log(row(['attach (compile to factors), LoRA µs', loraAttach * 1000, ''], w));
console.log(row(['attach (compile to factors), S²FT µs', s2ftAttach * 1000, s2ftAttach / loraAttach], w));
console.log(row(['decode b1 with the one layer, LoRA ms', median(decode.lora), ''], w));
console.log(row(['decode b1 with the one layer, S²FT ms', median(decode.s2ft), median(decode.s2ft) / median(decode.lora)], w));
