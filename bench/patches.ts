/**
 * bench/patches — what global and per-request robustness patches cost (runtime level, no HTTP, one ORT
 * thread, interleaved trials, medians and ranges):
 *   1. Global switch, two runtimes side by side: versions built on the serving thread (`sessionWorkers:
 *      'off'`) and in a worker thread (`'versions'`, the default). Build time, switch time, and how long a
 *      sequence decoding meanwhile waits because of it: its largest gap between two tokens while the
 *      version builds, next to its median gap and its largest gap in a run without a publish.
 *   2. The worker hop: decode step time of a version whose sessions run in a worker vs on this thread
 *      (same graphs, same weights), batch 1 and 8.
 *   3. The alternative design, those weights fed as graph inputs (switching = feeding other tensors):
 *      decode step time vs the constant-initializer graph, batch 1 and 8.
 *   4. Per-request patches (dense factors on the delta path, rank min(d_in, d_out)): decode step time at
 *      batch 1 and 8 with every row patched, and with 1 of 8 rows patched, vs base rows.
 *   5. A request with an adapter *and* a patch: the combined binding (factors concatenated along the rank,
 *      adapters/combine.ts) built per request vs taken from the resolver's cache.
 *
 *   npm run bench:patches -- [--model models/tiny-gpt2] [--trials 5] [--steps 24] [--tokens 60]
 *                            [--plain auto|on|off]
 */
import { parseArgs } from 'node:util';
import { BatchKv } from '../src/runtime/batch-kv.ts';
import { deltaTensors } from '../src/runtime/delta-feeds.ts';
import { Engine } from '../src/runtime/engine.ts';
import { loadRuntime, type Runtime } from '../src/runtime/index.ts';
import { seededRandom } from '../src/runtime/sampler.ts';
import { createSession } from '../src/runtime/session.ts';
import { denseFactors } from '../src/patches/patch-manager.ts';
import { combineBindings } from '../src/adapters/combine.ts';
import { CombinationCache } from '../src/adapters/combination-cache.ts';
import type { DeltaBinding } from '../src/runtime/types.ts';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { median, row } from './lib/stats.ts';
import { weightFeeds, weightsAsInputs } from './lib/weights-as-inputs.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    trials: { type: 'string', default: '5' },
    steps: { type: 'string', default: '24' },
    tokens: { type: 'string', default: '60' },
    blocks: { type: 'string', default: '0,1' },
    plain: { type: 'string', default: 'auto' },
  },
});
const trials = Number(args.trials);
const steps = Number(args.steps);
const maxTokens = Number(args.tokens);
const blocks = args.blocks!.split(',');
const plainSession = args.plain as 'auto' | 'on' | 'off';
const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');

const common = { modelDir: args.model!, device: 'cpu' as const, maxBatch: 8, maxQueue: 64, threads: 1, plainSession };
const inThread = await loadRuntime({ ...common, sessionWorkers: 'off' });
const hosted = await loadRuntime({ ...common, sessionWorkers: 'versions' });
const rt = inThread;
const patched = [...(rt.rewrite?.linearLayers ?? [])].filter((l) => blocks.some((b) => new RegExp(`\\.(h|layers)\\.${b}\\.`).test(l.name)) && rt.versions.consumers(l.weightName) === 1);
const uniform = seededRandom(7);
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => (uniform() * 2 - 1) * scale);
const deltas = new Map(patched.map((l) => [l.weightName, random(l.dIn * l.dOut, 1e-3)]));
const range = (xs: number[], digits = 1) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
console.log(`model ${args.model}, ${patched.length} patched layers (blocks ${blocks.join(',')}), ${trials} trials, ORT 1 thread, plain session ${plainSession}`);
console.log(`load average at start ${load()}\n`);

// 1. Global switch while a sequence decodes.
const prompt = rt.tokenizer.encode('HAMLET.\nTo be, or not to be');
interface Gaps { median: number; max: number; loopMax: number; maxDuring?: number; build?: number; sw?: number; during?: number }
async function decodeGaps(r: Runtime, publish: boolean): Promise<Gaps> {
  const h = r.scheduler.submit({ promptIds: prompt, sampling: { maxTokens, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true } });
  const times: number[] = [];
  let swap: Promise<void> | undefined;
  let window: [number, number] | undefined;
  const out: Partial<Gaps> = {};
  // The serving thread's longest stretch without turning its event loop (what HTTP waits), from token 10 to
  // the switch (publish) or to the end (quiet).
  const loop = monitorEventLoopDelay({ resolution: 1 });
  for await (const e of h) {
    times.push(performance.now());
    if (times.length === 10) loop.enable();
    if (publish && times.length === 10) {
      const t0 = performance.now();
      swap = r.versions.publish('bench', { add: deltas }).then((s) => {
        loop.disable();
        window = [t0, performance.now()];
        out.build = s.buildMs;
        out.sw = s.switchMs;
      });
    }
    void e;
  }
  await swap;
  loop.disable();
  out.loopMax = loop.max / 1e6;
  if (publish) await r.versions.publish('bench', undefined);
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  if (window) {
    // Every gap that overlaps the publish (call → switch): the wait the build caused, if any.
    const [a, b] = window;
    const during = gaps.filter((_, i) => times[i + 1]! > a && times[i]! < b);
    out.maxDuring = Math.max(0, ...during);
    out.during = during.length;
    if (b > times.at(-1)!) console.log('   (the sequence ended before the switch: raise --tokens)');
  }
  return { median: median(gaps), max: Math.max(...gaps), loopMax: out.loopMax!, ...out };
}
const contendersSwitch: [string, Runtime][] = [
  ['built on the serving thread (off)', inThread],
  ['built in a worker (versions)', hosted],
];
const sw = new Map<string, { quietMedian: number[]; quietMax: number[]; maxDuring: number[]; builds: number[]; switches: number[]; during: number[]; loopQuiet: number[]; loopBusy: number[] }>();
for (let t = 0; t < trials; t++) {
  for (const [name, r] of contendersSwitch) {
    const acc = sw.get(name) ?? { quietMedian: [], quietMax: [], maxDuring: [], builds: [], switches: [], during: [], loopQuiet: [], loopBusy: [] };
    sw.set(name, acc);
    const quiet = await decodeGaps(r, false);
    acc.quietMedian.push(quiet.median);
    acc.quietMax.push(quiet.max);
    acc.loopQuiet.push(quiet.loopMax);
    const busy = await decodeGaps(r, true);
    acc.maxDuring.push(busy.maxDuring!);
    acc.builds.push(busy.build!);
    acc.switches.push(busy.sw!);
    acc.during.push(busy.during!);
    acc.loopBusy.push(busy.loopMax);
  }
}
console.log(`1. global switch while a sequence decodes (${maxTokens} tokens, publish after token 10), ms: median (range)`);
const w1 = [36, 20, 10, 18, 18, 22, 8, 20, 20];
console.log(row(['', 'build', 'switch', 'median token gap', 'largest gap, quiet', 'largest gap, publish', 'gaps', 'loop block, quiet', 'loop block, publish'], w1));
for (const [name] of contendersSwitch) {
  const a = sw.get(name)!;
  console.log(
    row(
      [name, `${median(a.builds).toFixed(0)} (${range(a.builds, 0)})`, median(a.switches).toFixed(3), `${median(a.quietMedian).toFixed(1)} (${range(a.quietMedian)})`,
        `${median(a.quietMax).toFixed(1)} (${range(a.quietMax)})`, `${median(a.maxDuring).toFixed(1)} (${range(a.maxDuring)})`, median(a.during),
        `${median(a.loopQuiet).toFixed(1)} (${range(a.loopQuiet)})`, `${median(a.loopBusy).toFixed(1)} (${range(a.loopBusy)})`],
      w1,
    ),
  );
}
console.log(`   ("gaps": token gaps that overlapped the publish; "loop block": the serving thread's longest event-loop delay, token 10 → switch or end;`);
console.log(`    the worker runtime's versions ≥ 1 run hosted, so its quiet runs after trial 1 include the hop)`);
console.log(`   load average after section 1: ${load()}\n`);

// 2. The worker hop: the same pristine weights, sessions on this thread vs in a worker.
const local = inThread.versions.current();
const remote = hosted.versions.current();
if (remote.id === 0 || local.changed.length + remote.changed.length > 0) throw new Error('expected a hosted pristine version after section 1');
// 2–4. Decode step time, engine level.
const info = await readModelInfo(args.model!);
const original = new Uint8Array(await readFile(info.onnxPath));
const asInputs = await createSession(weightsAsInputs(original, patched.map((l) => l.weightName)), { device: 'cpu', threads: 1 });
const inputsEngine = new Engine({ session: asInputs, shape: info, vocabSize: info.vocabSize, baseVersion: -1 });
const wFeeds = weightFeeds(new Map(patched.map((l) => [l.weightName, { data: rt.versions.pristine(l.weightName), dims: [l.dIn, l.dOut] }])));
const engine = local.engine;
const binding: DeltaBinding = {
  key: 'bench-patch',
  layers: new Map(patched.filter((l) => rt.deltaLayers.some((d) => d.name === l.name)).map((l) => [l.name, denseFactors(l.dIn, l.dOut, deltas.get(l.weightName)!)])),
};
async function stepMs(e: Engine, batch: number, feeds: (rows: number) => Record<string, import('onnxruntime-node').Tensor> | undefined): Promise<number> {
  const ids = Array.from({ length: batch }, () => prompt);
  const f = feeds(batch);
  let { kv } = await e.forward(BatchKv.empty(e.shape, batch), ids, f);
  const ms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    ({ kv } = await e.forward(kv, ids.map(() => [42]), f));
    ms.push(performance.now() - t0);
  }
  return median(ms);
}
const contenders: [string, (b: number) => Promise<number>][] = [
  ['base (plain graph, constant weights)', (b) => stepMs(engine, b, () => undefined)],
  ['base, sessions in a worker (the hop)', (b) => stepMs(remote.engine, b, () => undefined)],
  [`${patched.length} weights fed as inputs`, (b) => stepMs(inputsEngine, b, () => wFeeds)],
  ['per-request patch, every row', (b) => stepMs(engine, b, (n) => deltaTensors(rt.deltaLayers, Array(n).fill(binding)))],
  ['per-request patch, 1 row of the batch', (b) => stepMs(engine, b, (n) => deltaTensors(rt.deltaLayers, [binding, ...Array(n - 1).fill(undefined)]))],
];
const results = new Map<string, number[]>();
for (let t = 0; t < trials; t++) {
  for (const batch of [1, 8]) {
    for (const [name, fn] of contenders) {
      if (batch === 1 && name.includes('1 row')) continue;
      const key = `${name}|${batch}`;
      results.set(key, [...(results.get(key) ?? []), await fn(batch)]);
    }
  }
}
const widths = [40, 14, 10, 14, 10];
console.log('2–4. decode step, ms (median of trials; range) and ratio to base (on this thread)');
console.log(row(['', 'batch 1', '×', 'batch 8', '×'], widths));
for (const [name] of contenders) {
  const cells: (string | number)[] = [name];
  for (const batch of [1, 8]) {
    const xs = results.get(`${name}|${batch}`);
    const base = median(results.get(`${contenders[0]![0]}|${batch}`)!);
    if (!xs) cells.push('—', '—');
    else cells.push(`${median(xs).toFixed(2)} (${range(xs)})`, `${(median(xs) / base).toFixed(2)}×`);
  }
  console.log(row(cells, widths));
}

// 5. Adapter + patch binding per request: a rank-8 LoRA on every delta layer combined with the patch.
const lora: DeltaBinding = {
  key: 'bench-lora',
  layers: new Map(rt.deltaLayers.map((d) => [d.name, { rank: 8, a: random(d.dIn * 8, 0.02), b: random(8 * d.dOut, 0.02) }])),
};
const combineMs: number[] = [];
for (let i = 0; i < Math.max(5, trials * 4); i++) {
  const t0 = performance.now();
  combineBindings([{ binding: lora, weight: 1 }, { binding, weight: 1 }], 'bench');
  combineMs.push(performance.now() - t0);
}
const cache = new CombinationCache();
const cachedMs: number[] = [];
for (let i = 0; i < Math.max(5, trials * 4); i++) {
  const t0 = performance.now();
  cache.combine(lora, binding);
  cachedMs.push(performance.now() - t0);
}
const combinedBytes = [...combineBindings([{ binding: lora, weight: 1 }, { binding, weight: 1 }]).layers.values()].reduce((n, f) => n + 4 * (f.a.length + f.b.length), 0);
const decode1 = median(results.get(`${contenders[0]![0]}|1`)!);
console.log(`\n5. adapter + patch binding, built per request: ${median(combineMs).toFixed(2)} ms (${range(combineMs, 2)}), ${(combinedBytes / 2 ** 20).toFixed(1)} MiB of factors = ${(median(combineMs) / decode1).toFixed(1)} base decode steps at batch 1 (on the serving thread, before the request's prefill)`);
console.log(`   from the resolver's cache (adapters/combination-cache.ts; first call builds it): ${median(cachedMs.slice(1)).toFixed(4)} ms (first ${cachedMs[0]!.toFixed(1)} ms)`);
console.log(`load average at the end ${load()}`);
await asInputs.release();
await inThread.close();
await hosted.close();
