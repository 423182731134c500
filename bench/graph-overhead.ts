/**
 * bench/graph-overhead — cost of the delta branches added by src/runtime/graph at model load, side by
 * side in one run: the un-rewritten model vs rewrites with branches on `attention` or `all-linear`
 * layers, fed rank 0 (no adapter in the batch) and rank 16 (every row has an adapter on every branch).
 * Scenarios: one decode step (1 new token, 64 cached) at batch 1 and 8, and a 64-token prefill at batch 1.
 * Rounds interleave the variants so machine noise hits all alike; medians and ratios vs base are printed
 * and written to bench/out/graph-overhead.json. Also times buildDeltaFeeds (host-side packing per step).
 *
 *   npx tsx bench/graph-overhead.ts [--model models/tiny-gpt2] [--threads 1] [--rounds 7] [--runs 20]
 */
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, buildDeltaFeeds, type DeltaLayer, type DeltaSelection } from '../src/runtime/graph/index.ts';
import { decodeModel, valueInfoDims } from '../src/runtime/graph/onnx.ts';
import { fuseSharedInputs } from './lib/fused-branches.ts';
import type { DeltaBinding, LayerFactors } from '../src/runtime/types.ts';
import { deltaTensors } from '../src/runtime/delta-feeds.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    threads: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '7' },
    runs: { type: 'string', default: '20' },
    past: { type: 'string', default: '64' },
    fused: { type: 'boolean', default: false },
  },
});
const PAST = Number(args.past);
const bytes = new Uint8Array(await readFile(`${args.model}/onnx/model.onnx`));

interface Variant {
  name: string;
  session: ort.InferenceSession;
  layers: readonly DeltaLayer[];
  rank: number;
  fusedFeeds?: (batch: number, rank: number) => Record<string, ort.Tensor>;
}

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: Number(args.threads), interOpNumThreads: 1 };
const variants: Variant[] = [{ name: 'base', session: await ort.InferenceSession.create(bytes, opts), layers: [], rank: 0 }];
for (const sel of ['attention', 'all-linear'] as DeltaSelection[]) {
  const rw = addDeltaBranches(bytes, sel);
  const session = await ort.InferenceSession.create(rw.bytes, opts);
  for (const rank of [0, 16]) variants.push({ name: `${String(sel)} r=${rank}`, session, layers: rw.layers, rank });
}
if (args.fused) {
  for (const sel of ['attention', 'all-linear'] as DeltaSelection[]) {
    const f = fuseSharedInputs(bytes, sel);
    const session = await ort.InferenceSession.create(f.bytes, opts);
    for (const rank of [0, 16]) variants.push({ name: `${String(sel)} fused r=${rank}`, session, layers: [], rank, fusedFeeds: f.feeds });
  }
}

/** Every row carries random rank-r factors on every branch of the variant. */
function binding(layers: readonly DeltaLayer[], rank: number, key: string): DeltaBinding {
  const m = new Map<string, LayerFactors>();
  for (const l of layers) m.set(l.name, { rank, a: new Float32Array(l.dIn * rank).fill(0.01), b: new Float32Array(rank * l.dOut).fill(0.01) });
  return { key, layers: m };
}

function baseFeeds(batch: number, seq: number, past: number): Record<string, ort.Tensor> {
  const model = decodeModel(bytes);
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of model.graph!.input!) {
    const name = input.name!;
    const dims = (valueInfoDims(input) ?? []).map((d) =>
      d === 'batch_size' ? batch : d === 'sequence_length' ? seq : d === 'past_sequence_length' ? past : d === 'total_sequence_length' ? past + seq : (d as number),
    );
    const n = dims.reduce((p, d) => p * d, 1);
    if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(1 + (i % 100))), dims);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', new BigInt64Array(n).fill(1n), dims);
    else if (name === 'position_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(past + (i % seq))), dims);
    else feeds[name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1), dims);
  }
  return feeds;
}

function variantFeeds(v: Variant, batch: number, seq: number, past: number): Record<string, ort.Tensor> {
  const feeds = baseFeeds(batch, seq, past);
  if (v.fusedFeeds) return { ...feeds, ...v.fusedFeeds(batch, v.rank) };
  const rows = Array.from({ length: batch }, (_, i) => (v.rank > 0 ? binding(v.layers, v.rank, `r${i}`) : undefined));
  Object.assign(feeds, deltaTensors(v.layers, rows));
  return feeds;
}

const scenarios = [
  { name: 'decode b=1', batch: 1, seq: 1, past: PAST },
  { name: 'decode b=8', batch: 8, seq: 1, past: PAST },
  { name: 'prefill b=1 s=64', batch: 1, seq: 64, past: 0 },
];
const results: Record<string, Record<string, { ms: number; ratio: number }>> = {};
for (const sc of scenarios) {
  const feeds = variants.map((v) => variantFeeds(v, sc.batch, sc.seq, sc.past));
  const times = variants.map(() => [] as number[]);
  for (let i = 0; i < variants.length; i++) for (let w = 0; w < 3; w++) await variants[i]!.session.run(feeds[i]!);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (let i = 0; i < variants.length; i++) {
      for (let r = 0; r < Number(args.runs); r++) {
        const t0 = performance.now();
        await variants[i]!.session.run(feeds[i]!);
        times[i]!.push(performance.now() - t0);
      }
    }
  }
  const baseMs = median(times[0]!);
  results[sc.name] = Object.fromEntries(variants.map((v, i) => [v.name, { ms: median(times[i]!), ratio: median(times[i]!) / baseMs }]));
}

// Host-side packing cost per step (all-linear, batch 8, rank 16).
const all = variants.find((v) => v.name === 'all-linear r=16')!;
const rows8 = Array.from({ length: 8 }, (_, i) => binding(all.layers, 16, `r${i}`));
const packTimes: number[] = [];
for (let i = 0; i < 50; i++) {
  const t0 = performance.now();
  buildDeltaFeeds(all.layers, rows8);
  packTimes.push(performance.now() - t0);
}

console.log(`model ${args.model}, ${args.threads} thread(s), past ${PAST}, medians of ${Number(args.rounds) * Number(args.runs)} runs`);
console.log(['variant'.padEnd(26), ...scenarios.map((s) => s.name.padStart(22))].join(''));
for (const v of variants) {
  console.log([v.name.padEnd(26), ...scenarios.map((s) => { const r = results[s.name]![v.name]!; return `${r.ms.toFixed(3)} ms ${r.ratio.toFixed(3)}×`.padStart(22); })].join(''));
}
console.log(`buildDeltaFeeds all-linear b=8 r=16: ${median(packTimes).toFixed(3)} ms/step`);
await mkdir('bench/out', { recursive: true });
await writeFile(`bench/out/graph-overhead-${args.model.split('/').pop()}.json`, JSON.stringify({ args, results, packMs: median(packTimes) }, null, 2));
for (const v of new Set(variants.map((v) => v.session))) await v.release();
