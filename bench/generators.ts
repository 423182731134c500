/**
 * bench/generators — what HY-WU generated weights cost, side by side in one run (runtime + registry level, no
 * HTTP, tiny-gpt2 and the shipped generator adapters/gen-speaker, interleaved trials, medians and ranges):
 *   1. generation latency per request: cold (a condition never seen: embed + generator run + compile + cache
 *      store) for string and vector conditions, and warm (the cached factors), plus the one-off generator load;
 *   2. decode with generated rank-r factors vs the very same factors loaded from disk as a PEFT LoRA of rank r
 *      (should be equal: both are per-row factors on the same branches), batch 1 and 8;
 *   3. 8 concurrent requests with 8 different conditions vs 8 with the same condition (factors cached, and
 *      cold: the 8 generations included).
 *
 *   npm run bench:generators -- [--tokens 32] [--trials 5] [--threads 1]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { attachTarget, loadAdapter } from '../src/adapters/index.ts';
import { writeSafetensors, type TensorToWrite } from '../src/adapters/safetensors-writer.ts';
import { loadRuntime } from '../src/runtime/index.ts';
import { seededRandom } from '../src/runtime/sampler.ts';
import type { DeltaBinding } from '../src/runtime/types.ts';
import { createAdapterServing } from '../src/server/adapter-serving.ts';
import { createLogger } from '../src/server/logging.ts';
import { ServerMetrics } from '../src/server/metrics.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    tokens: { type: 'string', default: '32' },
    trials: { type: 'string', default: '5' },
    threads: { type: 'string', default: '1' },
    generator: { type: 'string', default: 'gen-speaker' },
  },
});
const tokens = Number(args.tokens);
const trials = Number(args.trials);
const GEN = args.generator;

const rt = await loadRuntime({ modelDir: 'models/tiny-gpt2', device: 'cpu', maxBatch: 8, maxQueue: 64, threads: Number(args.threads) });
const serving = await createAdapterServing({
  runtime: rt,
  rewrite: rt.rewrite,
  deltaTargets: undefined,
  adapterDir: 'adapters',
  baseOnnxPath: rt.model.onnxPath,
  cacheBytes: 256 << 20,
  metrics: new ServerMetrics(),
  logger: createLogger('silent'),
});
const gens = serving.generators;
const manifest = gens.get(GEN)?.manifest;
if (!manifest) throw new Error(`no generator ${GEN} in adapters/`);
const uniform = seededRandom(7);
const freshVector = () => Array.from({ length: manifest.condition_dim }, () => uniform() * 2 - 1);
let serial = 0;
/** A string never embedded before in this run (distinct token sequences, so distinct vectors). */
const freshString = () => `${manifest.examples[serial % manifest.examples.length]} ${++serial}`;
const time = async (fn: () => Promise<unknown>): Promise<number> => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

// 1. Generation latency.
const loadMs = await time(() => gens.factors(GEN, freshVector()));
const lat: Record<string, number[]> = { 'cold, string condition': [], 'cold, vector condition': [], 'warm (cached), string condition': [] };
const warmKey = manifest.examples[0]!;
await gens.factors(GEN, warmKey);
for (let t = 0; t < trials * 4; t++) {
  lat['cold, string condition']!.push(await time(() => gens.factors(GEN, freshString())));
  lat['cold, vector condition']!.push(await time(() => gens.factors(GEN, freshVector())));
  lat['warm (cached), string condition']!.push(await time(() => gens.factors(GEN, warmKey)));
}

// 2. The same factors as a generated binding and as a PEFT LoRA loaded from disk.
const generated = (await gens.factors(GEN, manifest.examples[0]!)).binding;
const loraDir = await mkdtemp(path.join(tmpdir(), 'bench-gen-lora-'));
await writeAsPeft(generated, loraDir);
const asLora = (await loadAdapter(loraDir, attachTarget(rt.rewrite!, 'all-linear'), 'as-lora')).binding;
await rm(loraDir, { recursive: true });
const conds8 = Array.from({ length: 8 }, () => freshVector());

const prompts = ['ROMEO.\nBut soft,', 'HAMLET.\nTo be', 'KING LEAR.\nBlow', 'PORTIA.\nThe quality', 'MACBETH.\nIs this',
  'JULIET.\nO Romeo', 'PUCK.\nIf we shadows', 'FALSTAFF.\nWhat time'].map((p) => rt.tokenizer.encode(p));
const decode = (deltas: readonly (DeltaBinding | undefined)[]) => time(() => Promise.all(deltas.map((delta, i) => rt.scheduler.submit({
  promptIds: prompts[i % prompts.length]!,
  sampling: { maxTokens: tokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true },
  ...(delta ? { delta } : {}),
}).result)));
/** 8 requests that each resolve their condition through the registry first, as the server does. */
const resolved = (conditions: readonly (readonly number[] | string)[]) => time(async () => {
  const deltas = await Promise.all(conditions.map(async (c) => (await gens.factors(GEN, c as number[] | string)).binding));
  await Promise.all(deltas.map((delta, i) => rt.scheduler.submit({
    promptIds: prompts[i]!,
    sampling: { maxTokens: tokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true },
    delta,
  }).result));
});
const cases: Record<string, () => Promise<number>> = {
  'base b1': () => decode([undefined]),
  [`generated r${manifest.rank} b1`]: () => decode([generated]),
  [`same factors as PEFT LoRA r${manifest.rank} b1`]: () => decode([asLora]),
  'base b8': () => decode(Array(8).fill(undefined)),
  [`generated r${manifest.rank} b8, one condition`]: () => decode(Array(8).fill(generated)),
  [`same factors as PEFT LoRA r${manifest.rank} b8`]: () => decode(Array(8).fill(asLora)),
  'b8, 8 different conditions (cached)': () => resolved(conds8),
  'b8, 8 equal conditions (cached)': () => resolved(Array(8).fill(conds8[0]!)),
  'b8, 8 different new conditions (8 generations)': () => resolved(Array.from({ length: 8 }, () => freshVector())),
  'b8, 8 equal new conditions (1 generation)': () => resolved(Array(8).fill(freshVector())),
};
const ms: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (const run of Object.values(cases)) await run(); // warm-up
for (let t = 0; t < trials; t++) for (const [name, run] of Object.entries(cases)) ms[name]!.push(await run());

await gens.close();
serving.adapters.close();
await rt.close();

const range = (v: readonly number[]) => `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}`;
const w = [50, 11, 16, 10];
console.log(`\nbench/generators — tiny-gpt2 + ${GEN} (rank ${manifest.rank}, d_c ${manifest.condition_dim}, ${manifest.targets.length} target layers), ${trials} trials, ${tokens} new tokens per request`);
console.log(`generator load (ONNX session + embedding table + trial run), once: ${loadMs.toFixed(1)} ms`);
console.log(row(['generation latency per request', 'median ms', 'range', ''], w));
for (const [name, v] of Object.entries(lat)) console.log(row([name, median(v), range(v), ''], w));
console.log(row(['decode / throughput', 'median ms', 'range', 'ratio'], w));
const m = (k: string) => median(ms[k]!);
const ratios: Record<string, string> = {
  [`generated r${manifest.rank} b1`]: 'base b1',
  [`same factors as PEFT LoRA r${manifest.rank} b1`]: `generated r${manifest.rank} b1`,
  [`generated r${manifest.rank} b8, one condition`]: 'base b8',
  [`same factors as PEFT LoRA r${manifest.rank} b8`]: `generated r${manifest.rank} b8, one condition`,
  'b8, 8 different conditions (cached)': 'b8, 8 equal conditions (cached)',
  'b8, 8 different new conditions (8 generations)': 'b8, 8 equal new conditions (1 generation)',
};
for (const name of Object.keys(cases)) {
  const vs = ratios[name];
  console.log(row([name, m(name), range(ms[name]!), vs ? `${(m(name) / m(vs)).toFixed(3)}×` : ''], w));
}
console.log('ratio = this row / the row it is compared with (base; generated; equal conditions).');

/** The generated, compiled factors (a = Aᵀ, b = s·Bᵀ) written back as PEFT lora_A = aᵀ, lora_B = bᵀ, scale 1. */
async function writeAsPeft(binding: DeltaBinding, dir: string): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, f] of binding.layers) {
    const dIn = f.a.length / f.rank;
    const dOut = f.b.length / f.rank;
    const A = new Float32Array(f.rank * dIn);
    const B = new Float32Array(dOut * f.rank);
    for (let i = 0; i < dIn; i++) for (let j = 0; j < f.rank; j++) A[j * dIn + i] = f.a[i * f.rank + j]!;
    for (let j = 0; j < f.rank; j++) for (let o = 0; o < dOut; o++) B[o * f.rank + j] = f.b[j * dOut + o]!;
    tensors[`base_model.model.${name}.lora_A.weight`] = { dtype: 'F32', shape: [f.rank, dIn], data: A };
    tensors[`base_model.model.${name}.lora_B.weight`] = { dtype: 'F32', shape: [dOut, f.rank], data: B };
  }
  await writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors);
  const modules = [...binding.layers.keys()];
  await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: manifest!.rank, lora_alpha: manifest!.rank, target_modules: modules, bias: 'none' }));
}
