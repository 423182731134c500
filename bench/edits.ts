/**
 * npm run bench:edits — knowledge-edit costs on the embedded model.
 *  1. Latency of edit #10, #1000 and #10000 of one stream (raw edits, u = 1 key per layer, both edited layers
 *     at their real sizes d_k = 1024, d_v = 256; commit = validate + log append + fsync + Woodbury step):
 *     the per-edit cost must not grow with history (goal: #10000 / #10 ≤ 1.2).
 *  2. A server in its own process: closed-loop completions (4 clients, greedy, 32 tokens) alone, then with an
 *     NDJSON stream of prompt edits running, then alone again: tokens/s, the slowdown, edits/s sustained and
 *     ack → visible latency (coalesced publishes) — once per PATCHBAY_EDIT_WORKER value (`--modes on,off`:
 *     the key probe and value search on a worker thread vs the serving thread), `--trials` interleaved,
 *     on `--model` (default tiny-gpt2; the f32 SmolLM2 import works once its edit_stats are present).
 *  3. Publishing: a full version build (what BaseVersions does) vs keeping the edited layers as fed graph
 *     inputs (no build at all, but every step pays for un-prepacked weights): decode step time of both.
 *  4. The RLS (Woodbury) step alone at --model's edited-layer sizes (it runs on the serving thread).
 * Figures depend on the machine (2 shared cores here, other jobs running); ratios are measured side by side.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { EditState } from '../src/edits/edit-state.ts';
import { EditStore } from '../src/edits/edit-store.ts';
import { BatchKv } from '../src/runtime/batch-kv.ts';
import { Engine } from '../src/runtime/engine.ts';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { createSession } from '../src/runtime/session.ts';
import { serveDuringStream, type ServeDuringStream } from './lib/edit-serve.ts';
import { startServer } from './lib/server-process.ts';
import { median } from './lib/stats.ts';
import { weightFeeds, weightsAsInputs } from './lib/weights-as-inputs.ts';
import { editLayerSpecs } from './lib/edit-specs.ts';
import { commitStream, rawEdits, rng, type CommitSample } from './lib/commit-stream.ts';

const { values: args } = parseArgs({
  options: {
    stream: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '20' },
    skip: { type: 'string', default: '' },
    // Part 2: the served model, PATCHBAY_EDIT_WORKER values compared, and trials per value (interleaved).
    model: { type: 'string', default: 'models/tiny-gpt2' },
    modes: { type: 'string', default: 'on,on:0,off' }, // on (default niceness), on:<nice> (PATCHBAY_EDIT_WORKER_NICE), off
    trials: { type: 'string', default: '1' },
    // A data directory to start every server from (copied): made by the first server if empty, kept. Lets a
    // slow C₀ inversion (SmolLM2) happen once, outside the timed run.
    template: { type: 'string' },
  },
});
const skip = new Set(args.skip!.split(','));
const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const { table, specs } = editLayerSpecs(bytes);

// 1. One long stream.
if (!skip.has('stream')) {
  const n = Number(args.stream);
  const dir = mkdtempSync(join(tmpdir(), 'bench-edits-'));
  const store = await EditStore.open({ dir, specs, lambda: 1, mu: 1, fingerprint: 'bench', snapshotEvery: 250, keepSnapshots: 2 });
  console.log(`load average at the start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const { commits, memory, seconds } = await commitStream(store, n, rawEdits(specs));
  // Window of 11 edits around each mark, leaving out the snapshot writes (every 250th edit), reported apart.
  const around = (k: number) => commits.slice(Math.max(0, k - 6), Math.min(n, k + 5)).filter((c) => c.snapshotMs === 0);
  const marks = [...new Set([10, 1000, 10000, n])].filter((k) => k <= n).sort((a, b) => a - b);
  const phase = (k: number, key: keyof CommitSample) => median(around(k).map((c) => c[key])).toFixed(2);
  console.log(`1. one stream of ${n} raw edits (u = 1 per layer, ${specs.map((s) => `${s.name} ${s.dK}×${s.dV}`).join(', ')}), commit incl. fsync`);
  console.log('   edit     commit median (range)     validate   write   fsync woodbury      gc  on-cpu  waited (medians over edits k−5…k+5, ms)');
  for (const k of marks) {
    const ms = around(k).map((c) => c.ms);
    console.log(`   #${String(k).padEnd(6)} ${median(ms).toFixed(2).padStart(7)} (${range(ms)})`.padEnd(38) + ['validateMs', 'writeMs', 'fsyncMs', 'applyMs', 'gcMs', 'cpuMs', 'waitMs'].map((p) => phase(k, p as keyof CommitSample).padStart(8)).join(''));
  }
  const first = median(around(marks[0]!).map((c) => c.ms));
  const last = median(around(marks.at(-1)!).map((c) => c.ms));
  const cpu = (k: number) => median(around(k).map((c) => c.cpuMs));
  const snaps = commits.filter((c) => c.snapshotMs > 0);
  console.log(`   #${marks.at(-1)} / #${marks[0]} = ${(last / first).toFixed(2)} (goal ≤ 1.2); on-CPU time #${marks.at(-1)} / #${marks[0]} = ${(cpu(marks.at(-1)!) / cpu(marks[0]!)).toFixed(2)}; snapshot edits (every 250th) median ${median(snaps.map((c) => c.ms)).toFixed(1)} ms; ${(n / seconds).toFixed(1)} edits/s overall; log ${(store.stats().logBytes / 2 ** 20).toFixed(1)} MiB`);
  // The whole stream in blocks (each ~1/10 of it): where a trend would show, away from the marks' small windows.
  const block = Math.max(1, Math.round(n / 10));
  const blocks = Array.from({ length: Math.ceil(n / block) }, (_, b) => commits.slice(b * block, (b + 1) * block).filter((c) => c.snapshotMs === 0));
  const col = (key: keyof CommitSample) => blocks.map((b) => median(b.map((c) => c[key])).toFixed(1)).join(' ');
  console.log(`   per block of ${block} edits (medians, ms): wall ${col('ms')}\n      on-cpu ${col('cpuMs')}\n      waited ${col('waitMs')}\n      woodbury ${col('applyMs')}\n      fsync ${col('fsyncMs')}`);
  console.log('   memory after edit: ' + memory.map((m) => `#${m.edit} heap ${m.heapUsedMiB.toFixed(1)} MiB, buffers ${m.arrayBuffersMiB.toFixed(1)} MiB, rss ${m.rssMiB.toFixed(0)} MiB, gc ${(m.gcTotalMs / 1000).toFixed(2)} s, load ${m.load1.toFixed(1)}`).join('\n                      '));
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

// 2. Serving while an edit stream runs: the search on a worker thread vs on the serving thread, same stream.
if (!skip.has('serve')) {
  const modes = args.modes!.split(',');
  const results = new Map<string, ServeDuringStream[]>();
  // One data directory made by the first server (its C₀ inversion takes a while on SmolLM2), copied fresh
  // for every trial, so each starts from seq 0 without paying for it again.
  const template = args.template ?? mkdtempSync(join(tmpdir(), 'bench-edits-template-'));
  mkdirSync(template, { recursive: true });
  let prepared = readdirSync(template).length > 0;
  for (let trial = 0; trial < Number(args.trials); trial++) {
    // Interleaved, order alternating per trial: neither mode always runs on the fresher machine.
    for (const mode of trial % 2 === 0 ? modes : [...modes].reverse()) {
      const data = mkdtempSync(join(tmpdir(), 'bench-edits-serve-'));
      if (prepared) cpSync(template, data, { recursive: true });
      // `on:0` = the worker at PATCHBAY_EDIT_WORKER_NICE=0; plain `on` = the server's default niceness.
      const [worker, nice] = mode.split(':');
      const env = { PATCHBAY_ADMIN_TOKEN: 'bench', PATCHBAY_DATA_DIR: data, PATCHBAY_THREADS: '1', PATCHBAY_MODEL_DIR: args.model!, PATCHBAY_EDIT_WORKER: worker!, ...(nice ? { PATCHBAY_EDIT_WORKER_NICE: nice } : {}) };
      const server = await startServer(env, undefined, 900_000);
      if (!prepared) {
        cpSync(data, template, { recursive: true });
        prepared = true;
      }
      try {
        const r = await serveDuringStream(server.url, 'bench', Number(args.seconds));
        (results.get(mode) ?? results.set(mode, []).get(mode)!).push(r);
        console.log(`   trial ${trial + 1}, search worker ${mode}: alone ${r.alone.map((x) => x.toFixed(1)).join(' / ')}, during ${r.during.toFixed(1)} tokens/s; ${r.acked} acks of ${r.sent} sent; load ${r.load.map((x) => x.toFixed(1)).join('→')}`);
      } finally {
        await server.stop();
        rmSync(data, { recursive: true, force: true });
      }
    }
  }
  if (!args.template) rmSync(template, { recursive: true, force: true });
  console.log(`2. serving on ${args.model} (4 closed-loop clients, greedy, 32 tokens each, PATCHBAY_THREADS=1) alone and during an NDJSON prompt-edit stream (${args.seconds} s windows), search worker ${modes.join(' vs ')}`);
  const med = (xs: number[]) => (xs.length ? median(xs) : NaN);
  for (const [mode, rs] of results) {
    const ratios = rs.map((r) => r.during / ((r.alone[0] + r.alone[1]) / 2));
    const all = (f: (r: ServeDuringStream) => number[]) => rs.flatMap(f);
    const acked = rs.reduce((a, r) => a + r.acked, 0);
    console.log(`   PATCHBAY_EDIT_WORKER=${mode.replace(':', ', _NICE=')}: during/alone ${med(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}); alone ${med(all((r) => r.alone)).toFixed(1)}, during ${med(rs.map((r) => r.during)).toFixed(1)} tokens/s; load ${range(all((r) => r.load))}`);
    console.log(`     edits: ${acked} acked of ${rs.reduce((a, r) => a + r.sent, 0)} sent, ${rs.reduce((a, r) => a + r.errors, 0)} errors; ${med(rs.map((r) => r.editsPerSecond)).toFixed(3)} edits/s; ack median ${med(all((r) => r.ackMs)).toFixed(0)} ms (compute ${med(all((r) => r.computeMs)).toFixed(0)} ms, log + fsync + RLS step on the serving thread ${med(all((r) => r.durableMs)).toFixed(1)} ms); ack → visible median ${med(all((r) => r.visibleMs)).toFixed(0)} ms${acked ? ` (${range(all((r) => r.visibleMs))})` : ''}`);
  }
  console.log('');
}

// 3. Publishing: edited layers fed as inputs vs constants (a rebuilt version).
if (!skip.has('publish')) {
  const info = await readModelInfo('models/tiny-gpt2');
  const constant = new Engine({ session: await createSession(bytes, { device: 'cpu', threads: 1 }), shape: info, vocabSize: info.vocabSize, baseVersion: 0 });
  const fed = new Engine({ session: await createSession(weightsAsInputs(bytes, specs.map((s) => s.initializer)), { device: 'cpu', threads: 1 }), shape: info, vocabSize: info.vocabSize, baseVersion: 0 });
  const feeds = weightFeeds(new Map(specs.map((s) => [s.initializer, { data: s.w0, dims: [s.dK, s.dV] }])));
  const prompt = Array.from({ length: 24 }, (_, i) => 100 + i);
  const step = async (e: Engine, batch: number, f: Record<string, import('onnxruntime-node').Tensor> | undefined) => {
    const ids = Array.from({ length: batch }, () => prompt);
    let { kv } = await e.forward(BatchKv.empty(e.shape, batch), ids, f);
    const ms: number[] = [];
    for (let s = 0; s < 20; s++) {
      const t0 = performance.now();
      ({ kv } = await e.forward(kv, ids.map(() => [42]), f));
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const builds: number[] = [];
  const res: Record<string, number[]> = {};
  for (let trial = 0; trial < 3; trial++) {
    const t0 = performance.now();
    const s = await createSession(table.patched(new Map(specs.map((sp) => [sp.initializer, sp.w0]))), { device: 'cpu', threads: 1 });
    builds.push(performance.now() - t0);
    await s.release();
    for (const batch of [1, 8]) {
      (res[`constant|${batch}`] ??= []).push(await step(constant, batch, undefined));
      (res[`fed|${batch}`] ??= []).push(await step(fed, batch, feeds));
    }
  }
  console.log('3. publishing an edit: rebuild a version (constant weights) vs edited layers fed as graph inputs');
  console.log(`   full session build from patched bytes: median ${median(builds).toFixed(0)} ms (${range(builds)}) per publish`);
  for (const batch of [1, 8]) {
    const c = median(res[`constant|${batch}`]!);
    const f = median(res[`fed|${batch}`]!);
    console.log(`   decode step, batch ${batch}: constant ${c.toFixed(2)} ms (${range(res[`constant|${batch}`]!)}), 2 layers fed ${f.toFixed(2)} ms (${range(res[`fed|${batch}`]!)}) → ×${(f / c).toFixed(2)}`);
  }
}

// 4. The RLS (Woodbury) step alone, at the edited layers' real sizes of --model: it runs on the serving thread
//    (EditStore.commit, after the fsync), so its time is a stall of decoding per edit.
if (!skip.has('woodbury')) {
  const modelBytes = new Uint8Array(readFileSync(join(args.model!, 'onnx', 'model.onnx')));
  const { specs: modelSpecs } = editLayerSpecs(modelBytes, join(args.model!, 'edit_stats.safetensors'));
  const state = await EditState.initial(modelSpecs, 1, 1);
  const r = rng(9);
  console.log(`4. RLS step (F = CK, Cholesky of I + KᵀF, C and W updates) on the serving thread, ${args.model}: ${modelSpecs.map((s) => `${s.dK}×${s.dV}`).join(', ')}`);
  for (const u of [1, 3]) {
    const ms: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const t0 = performance.now();
      for (const l of state.layers) l.update(Float64Array.from({ length: u * l.dK }, () => Math.abs(r()) * 0.1), Float64Array.from({ length: u * l.dV }, r), u);
      ms.push(performance.now() - t0);
    }
    const w32: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const t0 = performance.now();
      state.weights32();
      w32.push(performance.now() - t0);
    }
    console.log(`   u = ${u}: all ${modelSpecs.length} layers ${median(ms).toFixed(1)} ms (${range(ms)}); float32(W) for the publish ${median(w32).toFixed(1)} ms (${range(w32)}); load ${loadavg()[0]!.toFixed(1)}`);
  }
}
