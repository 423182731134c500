/**
 * bench/patches — what global and per-request robustness patches cost (runtime level, no HTTP, one ORT
 * thread, interleaved trials, medians and ranges):
 *   1. Global switch: build time and switch time of a base version changing the linear weights of blocks
 *      0–1 (what an RWS patch on the shallow layers touches), and how long a sequence decoding meanwhile
 *      waits because of it: its largest gap between two tokens during the switch vs its median gap.
 *   2. The alternative design, those 8 weights fed as graph inputs (switching = feeding other tensors):
 *      decode step time vs the constant-initializer graph, batch 1 and 8.
 *   3. Per-request patches (dense factors on the delta path, rank min(d_in, d_out)): decode step time at
 *      batch 1 and 8 with every row patched, and with 1 of 8 rows patched, vs base rows.
 *
 *   npm run bench:patches -- [--model models/tiny-gpt2] [--trials 5] [--steps 24]
 */
import { parseArgs } from 'node:util';
import { BatchKv } from '../src/runtime/batch-kv.ts';
import { deltaTensors } from '../src/runtime/delta-feeds.ts';
import { Engine } from '../src/runtime/engine.ts';
import { loadRuntime } from '../src/runtime/index.ts';
import { seededRandom } from '../src/runtime/sampler.ts';
import { createSession } from '../src/runtime/session.ts';
import { denseFactors } from '../src/patches/patch-manager.ts';
import type { DeltaBinding } from '../src/runtime/types.ts';
import { readFile } from 'node:fs/promises';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { median, row } from './lib/stats.ts';
import { weightFeeds, weightsAsInputs } from './lib/weights-as-inputs.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    trials: { type: 'string', default: '5' },
    steps: { type: 'string', default: '24' },
    blocks: { type: 'string', default: '0,1' },
  },
});
const trials = Number(args.trials);
const steps = Number(args.steps);
const blocks = args.blocks!.split(',');

const rt = await loadRuntime({ modelDir: args.model!, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: 1 });
const patched = [...(rt.rewrite?.linearLayers ?? [])].filter((l) => blocks.some((b) => new RegExp(`\\.(h|layers)\\.${b}\\.`).test(l.name)) && rt.versions.consumers(l.weightName) === 1);
const uniform = seededRandom(7);
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => (uniform() * 2 - 1) * scale);
const deltas = new Map(patched.map((l) => [l.weightName, random(l.dIn * l.dOut, 1e-3)]));
const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
console.log(`model ${args.model}, ${patched.length} patched layers (blocks ${blocks.join(',')}), ${trials} trials, ORT 1 thread\n`);

// 1. Global switch while a sequence decodes.
const prompt = rt.tokenizer.encode('HAMLET.\nTo be, or not to be');
async function decodeGaps(publish: boolean): Promise<{ gaps: number[]; swapWindow?: [number, number]; build?: number; sw?: number }> {
  const h = rt.scheduler.submit({ promptIds: prompt, sampling: { maxTokens: 60, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true } });
  const times: number[] = [];
  let started: Promise<void> | undefined;
  let window: [number, number] | undefined;
  let build: number | undefined;
  let sw: number | undefined;
  for await (const e of h) {
    times.push(performance.now());
    if (publish && times.length === 10) {
      const t0 = performance.now();
      started = rt.versions.publish('bench', { add: deltas }).then((s) => {
        window = [t0, performance.now()];
        build = s.buildMs;
        sw = s.switchMs;
      });
    }
    void e;
  }
  await started;
  await rt.versions.publish('bench', undefined);
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  return { gaps, ...(window ? { swapWindow: window } : {}), ...(build !== undefined ? { build, sw } : {}) } as never;
}
const steady: number[] = [];
const maxDuring: number[] = [];
const builds: number[] = [];
const switches: number[] = [];
for (let t = 0; t < trials; t++) {
  const quiet = await decodeGaps(false);
  steady.push(median(quiet.gaps));
  const busy = await decodeGaps(true);
  maxDuring.push(Math.max(...busy.gaps));
  builds.push(busy.build!);
  switches.push(busy.sw!);
}
console.log('1. global switch (version build off the request path, then an atomic switch)');
console.log(`   build ${median(builds).toFixed(1)} ms (${range(builds)}), switch ${median(switches).toFixed(3)} ms`);
console.log(`   decoding sequence: median gap between tokens ${median(steady).toFixed(1)} ms; largest gap while a version builds ${median(maxDuring).toFixed(1)} ms (${range(maxDuring)})`);
console.log(`   → in-flight wait caused by the switch ≈ ${(median(maxDuring) - median(steady)).toFixed(1)} ms per build (session creation runs on the event loop)\n`);

// 2 + 3. Decode step time, engine level.
const info = await readModelInfo(args.model!);
const original = new Uint8Array(await readFile(info.onnxPath));
const asInputs = await createSession(weightsAsInputs(original, patched.map((l) => l.weightName)), { device: 'cpu', threads: 1 });
const inputsEngine = new Engine({ session: asInputs, shape: info, vocabSize: info.vocabSize, baseVersion: -1 });
const wFeeds = weightFeeds(new Map(patched.map((l) => [l.weightName, { data: rt.versions.pristine(l.weightName), dims: [l.dIn, l.dOut] }])));
const engine = rt.versions.current().engine;
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
console.log('2–3. decode step, ms (median of trials; range) and ratio to base');
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
await asInputs.release();
await rt.close();
