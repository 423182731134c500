/**
 * bench/lora-overhead — where a LoRA's decode-step cost goes, side by side in one process: batch-1 decode steps
 * (1 new token, --past cached) of
 *   base        the branch-free graph (what a step without adapters runs on: the plain session),
 *   full r=0    the delta graph with every branch (all-linear) fed rank 0 (no adapter in the batch),
 *   full LoRA   the delta graph with every branch, fed the adapter (rank-0 on the layers it does not touch),
 *   used LoRA   the delta graph reduced to the adapter's layers (graph/keep-branches.ts; what the runtime moves
 *               a batch to once its layer set has run BRANCH_SESSION_AFTER_STEPS steps, branch-sessions.ts).
 * Runs interleave the variants one step at a time so machine noise hits all alike; medians, quartiles and
 * ratios vs base are printed. Also: nodes per graph, the host-side cost of packing the adapter's factor
 * tensors (once per batch composition, not per step), and with --profile ORT's per-node kernel times
 * (branch nodes vs the rest) from `enableProfiling`.
 *
 *   npm run bench:lora-overhead -- [--model models/smollm2-135m-q4] [--adapter adapters/lora-smollm2-bard]
 *                                  [--threads 2] [--rounds 60] [--past 64] [--profile] [--accuracy 0|4]
 * `--accuracy` sets a quantized model's MatMulNBits accuracy_level as PATCHBAY_NBITS_ACCURACY does (default: as imported).
 */
import { readFile, mkdir, writeFile, rm, readdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, sliceLogits } from '../src/runtime/graph/index.ts';
import { keepDeltaBranches } from '../src/runtime/graph/keep-branches.ts';
import { setNBitsAccuracy } from '../src/runtime/graph/nbits-accuracy.ts';
import { decodeModel, encodeModel, valueInfoDims } from '../src/runtime/graph/onnx.ts';
import { deltaTensors } from '../src/runtime/delta-feeds.ts';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { attachTarget, loadAdapter } from '../src/adapters/index.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-q4' },
    adapter: { type: 'string', default: 'adapters/lora-smollm2-bard' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '60' },
    past: { type: 'string', default: '64' },
    profile: { type: 'boolean', default: false },
    accuracy: { type: 'string' },
  },
});
const PAST = Number(args.past);
const load0 = loadavg();
const info = await readModelInfo(args.model);
const proto = decodeModel(new Uint8Array(await readFile(info.onnxPath)));
if (args.accuracy !== undefined) {
  if (args.accuracy !== '0' && args.accuracy !== '4') throw new Error(`--accuracy takes 0 or 4, got "${args.accuracy}"`);
  setNBitsAccuracy(proto, Number(args.accuracy) as 0 | 4);
}
sliceLogits(proto);
const plainBytes = encodeModel(proto);
const rewrite = addDeltaBranches(decodeModel(plainBytes), 'all-linear');
const adapter = await loadAdapter(args.adapter, attachTarget(rewrite, 'all-linear'));
const used = new Set(adapter.binding.layers.keys());
const usedBytes = keepDeltaBranches(rewrite.bytes, rewrite.layers, used);
const nodeCount = (b: Uint8Array) => decodeModel(b).graph!.node!.length;

const options = (name: string): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: Number(args.threads),
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  ...(args.profile ? { enableProfiling: true, profileFilePrefix: `bench/out/lora-overhead-${name}` } : {}),
});
await mkdir('bench/out', { recursive: true });
const sessions = {
  base: await ort.InferenceSession.create(plainBytes, options('base')),
  full: await ort.InferenceSession.create(rewrite.bytes, options('full')),
  used: await ort.InferenceSession.create(usedBytes, options('used')),
};

/** input_ids, mask, positions and a --past-long KV cache (values do not matter for timing). */
function stepFeeds(): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {};
  for (const input of proto.graph!.input!) {
    const name = input.name!;
    const dims = (valueInfoDims(input) ?? []).map((d) =>
      d === 'batch_size' ? 1 : d === 'sequence_length' ? 1 : d === 'past_sequence_length' || d === 'cache_capacity' ? PAST : d === 'total_sequence_length' ? PAST + 1 : (d as number),
    );
    const n = dims.reduce((p, d) => p * d, 1);
    if (name === 'input_ids') f[name] = new ort.Tensor('int64', BigInt64Array.of(42n), dims);
    else if (name === 'attention_mask') f[name] = new ort.Tensor('int64', new BigInt64Array(n).fill(1n), dims);
    else if (name === 'position_ids') f[name] = new ort.Tensor('int64', BigInt64Array.of(BigInt(PAST)), dims);
    else if (name.startsWith('past_key_values')) f[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1), dims);
    else f[name] = new ort.Tensor('int64', BigInt64Array.of(-1n), [1]); // logits slice start: last position
  }
  return f;
}
const packTimes: number[] = [];
let loraFeeds: Record<string, ort.Tensor> = {};
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  loraFeeds = deltaTensors(rewrite.layers, [adapter.binding]);
  packTimes.push(performance.now() - t0);
}
const usedInputs = new Set(sessions.used.inputNames);
const base = stepFeeds();
const variants: { name: string; session: ort.InferenceSession; feeds: Record<string, ort.Tensor> }[] = [
  { name: 'base (plain graph)', session: sessions.base, feeds: base },
  { name: 'full graph, r=0', session: sessions.full, feeds: { ...base, ...deltaTensors(rewrite.layers, [undefined]) } },
  { name: 'full graph, LoRA', session: sessions.full, feeds: { ...base, ...loraFeeds } },
  { name: 'used-layers graph, LoRA', session: sessions.used, feeds: Object.fromEntries(Object.entries({ ...base, ...loraFeeds }).filter(([k]) => usedInputs.has(k))) },
];
const times = variants.map(() => [] as number[]);
for (const v of variants) for (let w = 0; w < 5; w++) await v.session.run(v.feeds);
for (let round = 0; round < Number(args.rounds); round++) {
  for (let i = 0; i < variants.length; i++) {
    const t0 = performance.now();
    await variants[i]!.session.run(variants[i]!.feeds);
    times[i]!.push(performance.now() - t0);
  }
}
const quartile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;
const baseMs = median(times[0]!);
const load1 = loadavg();
console.log(`bench/lora-overhead — ${args.model} + ${args.adapter} (${used.size} of ${rewrite.layers.length} branches used), batch 1, ${PAST} cached, ${args.threads} thread(s), ${args.rounds} interleaved rounds`);
console.log(`load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${load1.map((x) => x.toFixed(2)).join(' ')}`);
console.log(`nodes: base ${nodeCount(plainBytes)}, full ${nodeCount(rewrite.bytes)}, used-layers ${nodeCount(usedBytes)}`);
console.log('variant'.padEnd(26) + 'median ms'.padStart(11) + '  q1–q3 ms'.padStart(17) + '  × base'.padStart(9));
const results = variants.map((v, i) => {
  const ms = median(times[i]!);
  console.log(v.name.padEnd(26) + ms.toFixed(3).padStart(11) + `${quartile(times[i]!, 0.25).toFixed(2)}–${quartile(times[i]!, 0.75).toFixed(2)}`.padStart(17) + (ms / baseMs).toFixed(3).padStart(9));
  return { name: v.name, ms, q1: quartile(times[i]!, 0.25), q3: quartile(times[i]!, 0.75), ratio: ms / baseMs };
});
console.log(`packing the adapter's factor tensors (deltaTensors, once per batch composition): ${median(packTimes).toFixed(3)} ms`);

let profile: Record<string, { runs: number; kernelUs: number; branchNodes: number; branchUs: number }> | undefined;
if (args.profile) {
  profile = {};
  for (const [name, s] of Object.entries(sessions)) {
    s.endProfiling(); // onnxruntime-node returns no file name: it is `<prefix>_<timestamp>.json`
    const name0 = (await readdir('bench/out')).find((f) => f.startsWith(`lora-overhead-${name}_`) && f.endsWith('.json'));
    if (!name0) throw new Error(`no ORT profile for ${name} in bench/out`);
    const file = `bench/out/${name0}`;
    const events = JSON.parse(await readFile(file, 'utf8')) as { cat: string; name: string; dur: number }[];
    await rm(file);
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').length;
    const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
    const branch = kernels.filter((e) => e.name.startsWith('/delta/'));
    const sum = (xs: { dur: number }[]) => xs.reduce((a, e) => a + e.dur, 0) / runs;
    profile[name] = { runs, kernelUs: sum(kernels), branchNodes: branch.length / runs, branchUs: sum(branch) };
    console.log(`profile ${name}: ${runs} runs, kernel time ${sum(kernels).toFixed(0)} µs/run, of it ${(branch.length / runs).toFixed(0)} branch nodes ${sum(branch).toFixed(0)} µs/run`);
  }
}
await writeFile(`bench/out/lora-overhead-${args.model.split('/').pop()}.json`, JSON.stringify({ args, load: { before: load0, after: load1 }, results, packMs: median(packTimes), profile }, null, 2));
for (const s of Object.values(sessions)) await s.release();
