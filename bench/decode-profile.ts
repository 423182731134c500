/**
 * bench/decode-profile — where a decode step's time goes, for one or more variants side by side:
 *   1. wall time of decode steps on the served graph (the runtime's logits slice applied, no delta branches —
 *      what base-only traffic runs), sessions of every variant open at once, rounds interleaved, medians;
 *   2. ORT's own profiler (`enableProfiling`) on the same steps, kernel time summed per op type.
 * A variant is a model directory × an accuracy_level (PATCHBAY_NBITS_ACCURACY's rewrite) × ORT pool spinning
 * (PATCHBAY_ORT_SPINNING), e.g. the model before and after an importer change. `--dequantized` adds, for each
 * quantized model, its float32 form built at load (graph/nbits-dequantize.ts, PATCHBAY_WIDE_SESSION=f32).
 *
 *   npm run bench:decode-profile -- --model models/smollm2-135m-q4[,other-dir] [--accuracy 0[,4]] [--spinning on[,off]]
 *        [--dequantized] [--batch 1,8] [--context 32] [--steps 16] [--rounds 3] [--threads 2] [--top 14] [--no-profile]
 *
 * "cpu ms/step" is this process's CPU time per step (all threads; with --threads 1 it is the work itself,
 * less sensitive than wall time to other jobs on a shared machine; with more threads it includes spinning).
 * "kernel Σ" is the sum of the per-node kernel times ORT records; profiled wall − kernel Σ is what the session
 * pays around the kernels (allocation, feeds/fetches, N-API); the profiler's bookkeeping inflates small nodes,
 * hence the wall figures come from sessions without it.
 */
import { parseArgs } from 'node:util';
import { basename, resolve } from 'node:path';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { readModelInfo, type ModelInfo } from '../src/runtime/model-config.ts';
import { decodeModel, encodeModel } from '../src/runtime/graph/onnx.ts';
import { sliceLogits, LOGITS_START_INPUT } from '../src/runtime/graph/logits-slice.ts';
import { setNBitsAccuracy } from '../src/runtime/graph/nbits-accuracy.ts';
import { dequantizeNBitsLayers } from '../src/runtime/graph/nbits-dequantize.ts';
import { ortSessionOptions } from '../src/runtime/session.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-q4' },
    accuracy: { type: 'string' },
    spinning: { type: 'string' },
    batch: { type: 'string', default: '1,8' },
    context: { type: 'string', default: '32' },
    steps: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    top: { type: 'string', default: '14' },
    'no-profile': { type: 'boolean', default: false },
    dequantized: { type: 'boolean', default: false },
  },
});
const steps = Number(args.steps);
const context = Number(args.context);
const rounds = Number(args.rounds);
const threads = Number(args.threads);
const dir = await mkdtemp(`${tmpdir()}/pb-profile-`);

interface Variant {
  label: string;
  info: ModelInfo;
  bytes: Uint8Array;
  nodes: number;
  spinning?: boolean;
}
const variants: Variant[] = [];
for (const m of args.model.split(',')) {
  const info = await readModelInfo(resolve(m));
  const stored = new Uint8Array(await readFile(info.onnxPath));
  const levels: (string | undefined)[] = args.accuracy?.split(',') ?? [undefined];
  for (const level of args.dequantized ? [...levels, 'f32'] : levels) {
    const proto = decodeModel(stored);
    if (level === 'f32' && dequantizeNBitsLayers(proto) === 0) continue; // not a quantized model
    if (level !== undefined && level !== 'f32') setNBitsAccuracy(proto, Number(level) as 0 | 4);
    sliceLogits(proto);
    const bytes = encodeModel(proto);
    for (const spin of args.spinning?.split(',') ?? [undefined]) {
      if (spin !== undefined && spin !== 'on' && spin !== 'off') throw new Error(`--spinning takes on and/or off, got "${spin}"`);
      const label = `${basename(resolve(m))}${level !== undefined ? ` @${level}` : ''}${spin !== undefined ? ` spin ${spin}` : ''}`;
      variants.push({ label, info, bytes, nodes: proto.graph?.node?.length ?? 0, ...(spin !== undefined ? { spinning: spin === 'on' } : {}) });
    }
  }
}

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}

console.log(`bench/decode-profile — context ${context}, ${steps} steps × ${rounds} rounds, ${threads} threads`);
/** `steps` decode steps of `rows` rows after a past of `context` positions; wall ms of each step. */
async function decode(session: InferenceSession, info: ModelInfo, rows: number): Promise<number[]> {
  const feeds: Record<string, Tensor> = {};
  const kvLen = (len: number) => rows * info.numKvHeads * len * info.headDim;
  for (let i = 0; i < info.numLayers; i++) for (const kind of ['key', 'value']) {
    feeds[`past_key_values.${i}.${kind}`] = new Tensor('float32', new Float32Array(kvLen(context)).fill(0.01), [rows, info.numKvHeads, context, info.headDim]);
  }
  if (session.inputNames.includes(LOGITS_START_INPUT)) feeds[LOGITS_START_INPUT] = new Tensor('int64', BigInt64Array.of(-1n), [1]);
  const wall: number[] = [];
  // Append-graph imports (import/attention-core.ts) read a fixed-width cache and return only the step's keys/values:
  // the past stays the `context`-wide feed (the runtime appends into its slots; here the width does not grow).
  const appends = session.outputNames.includes('new_key_values.0.key');
  let past = context;
  for (let s = 0; s < steps; s++) {
    const width = appends ? context : past;
    feeds['input_ids'] = new Tensor('int64', new BigInt64Array(rows).fill(42n), [rows, 1]);
    feeds['position_ids'] = new Tensor('int64', new BigInt64Array(rows).fill(BigInt(past)), [rows, 1]);
    feeds['attention_mask'] = new Tensor('int64', new BigInt64Array(rows * (width + 1)).fill(1n), [rows, width + 1]);
    const t = performance.now();
    const out = await session.run(feeds);
    wall.push(performance.now() - t);
    if (!appends) for (let i = 0; i < info.numLayers; i++) for (const kind of ['key', 'value']) feeds[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`]!;
    past++;
  }
  return wall;
}

const optionsOf = (v: Variant) => ortSessionOptions({ device: 'cpu', threads, ...(v.spinning !== undefined ? { spinning: v.spinning } : {}) });
const batches = args.batch.split(',').map(Number);
// 1. Wall time: every variant's session open, rounds interleaved.
const sessions = await Promise.all(variants.map((v) => InferenceSession.create(v.bytes, optionsOf(v))));
const wallMs = variants.map(() => batches.map(() => [] as number[]));
const cpuMs = variants.map(() => batches.map(() => [] as number[]));
for (let r = 0; r < rounds; r++) {
  for (const [bi, rows] of batches.entries()) {
    for (const [vi, v] of variants.entries()) {
      const cpu = process.cpuUsage();
      wallMs[vi]![bi]!.push(...(await decode(sessions[vi]!, v.info, rows)).slice(1));
      const used = process.cpuUsage(cpu);
      cpuMs[vi]![bi]!.push((used.user + used.system) / 1000 / steps);
    }
  }
}
await Promise.all(sessions.map((s) => s.release()));
const w0 = [34, 8, 12, 10, 12];
console.log(row(['variant', 'batch', 'step ms', 'tok/s', 'cpu ms/step'], w0) + '   nodes in file');
for (const [vi, v] of variants.entries()) {
  for (const [bi, rows] of batches.entries()) {
    const ms = median(wallMs[vi]![bi]!);
    console.log(row([v.label, rows, ms, (1000 * rows) / ms, median(cpuMs[vi]![bi]!)], w0) + `   ${v.nodes}`);
  }
}

// 2. Where the time goes: the profiler, per variant and batch.
for (const [vi, v] of (args['no-profile'] ? [] : variants).entries()) {
  for (const rows of batches) {
    const prefix = `${dir}/v${vi}b${rows}`;
    const session = await InferenceSession.create(v.bytes, { ...optionsOf(v), enableProfiling: true, profileFilePrefix: prefix });
    const wall = await decode(session, v.info, rows);
    session.endProfiling(); // onnxruntime-node returns nothing here: the file is the one under `dir` with this prefix
    await session.release();
    const file = `${dir}/${(await readdir(dir)).find((f) => f.startsWith(`v${vi}b${rows}_`) && f.endsWith('.json'))}`;
    const events = await readProfile(file);
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.dur / 1000);
    const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
    const byOp = new Map<string, { us: number; runs: number }>();
    for (const e of kernels) {
      const op = e.args?.op_name ?? '?';
      const acc = byOp.get(op) ?? { us: 0, runs: 0 };
      acc.us += e.dur;
      acc.runs++;
      byOp.set(op, acc);
    }
    const kernelMs = kernels.reduce((s, e) => s + e.dur, 0) / 1000 / steps;
    const nodesPerStep = kernels.length / steps;
    const profiledMs = median(wall);
    console.log(`\n${v.label}, batch ${rows}, profiled: ${profiledMs.toFixed(2)} ms wall (ORT model_run ${median(runs).toFixed(2)} ms); kernel Σ ${kernelMs.toFixed(2)} ms over ${nodesPerStep} nodes run (${((1000 * kernelMs) / nodesPerStep).toFixed(1)} µs/node); outside kernels ${(profiledMs - kernelMs).toFixed(2)} ms`);
    const w = [34, 10, 8, 10, 8];
    console.log(row(['op type', 'ms/step', 'share', 'nodes', 'µs/node'], w));
    for (const [op, { us, runs: n }] of [...byOp].sort((a, b) => b[1].us - a[1].us).slice(0, Number(args.top))) {
      const ms = us / 1000 / steps;
      console.log(row([op, ms, `${((100 * ms) / kernelMs).toFixed(1)}%`, n / steps, us / n], w));
    }
    // The output head alone (its node names start with /lm_head: the 49k-row projection is one layer of 211).
    const head = kernels.filter((e) => e.name.startsWith('/lm_head'));
    const headMs = head.reduce((s, e) => s + e.dur, 0) / 1000 / steps;
    console.log(row(['(of which /lm_head nodes)', headMs, `${((100 * headMs) / kernelMs).toFixed(1)}%`, head.length / steps, (1000 * headMs * steps) / Math.max(1, head.length)], w));
  }
}
await rm(dir, { recursive: true, force: true });

/** ORT may still be flushing the JSON when endProfiling returns: retry a parse failure for up to 5 s. */
async function readProfile(file: string): Promise<ProfileEvent[]> {
  for (let tries = 0; ; tries++) {
    try {
      return JSON.parse(await readFile(file, 'utf8')) as ProfileEvent[];
    } catch (e) {
      if (tries >= 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
