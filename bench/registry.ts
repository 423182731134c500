/**
 * bench/registry — adapter cold start and cache churn, against a real Patchbay server in a child process.
 *
 * 1. Cold vs warm (rank-16 LoRA on c_attn, tiny GPT-2): time to first token (a 1-token completion) of an adapter
 *    never requested before (read + validate + compile + attach) and of the same adapter right after (resident),
 *    interleaved trial by trial, plus the base model; the swap itself from the server's
 *    `patchbay_adapter_load_duration_seconds` histogram (the LoadEvent that also becomes the `adapter.load` span).
 *    With `--baseline <checkout>` (an older commit extracted with `git archive`, node_modules linked, as for
 *    bench:serve-ab) the same trials run against a server from that checkout too, interleaved, so the cold path
 *    of both is compared in one run.
 * 2. Decode stall: the largest gap between streamed tokens of a base request while cold loads of a big adapter
 *    (all linear layers, rank 64, 4 MiB) run in the same server, next to the same stream alone — how long a cold
 *    load holds the event loop that issues other requests' decode steps.
 * 4. Truncation (`--parts truncate`, in this process: CPU only): one dense layer re-factored to rank 16 — the
 *    Gram route (low-rank.ts) next to one-sided Jacobi on M (the previous dense path), interleaved, at sizes
 *    Jacobi finishes in a few seconds; the Gram route alone at SmolLM2's MLP shape 576×1536 (R = 600); and the
 *    event loop's largest delay while a 4-module merge of that shape is built (truncation runs on a worker thread).
 * 3. Churn: 200 distinct adapters on disk (generated into a temp dir), PATCHBAY_CACHE_BYTES sized for 20, ids
 *    drawn from a Zipf distribution (s = 1.1) at concurrency 8 for `--seconds` (default 120): hit rate, latency
 *    p50 / p99, errors, and the server's RSS after warm-up vs at the end.
 *
 *   npm run bench:registry -- [--parts cold,stall,churn,truncate] [--seconds 120] [--trials 31] [--warmup 15] [--baseline DIR]
 */
import { readFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loraBytes, realTarget, tempDir, writeLora, removeTempDirs } from '../test/registry/fixtures.ts';
import { startServer, timeCompletion, type ServerProcess } from './lib/server-process.ts';
import { median } from './lib/stats.ts';
import { matrix, multiply, svd } from '../src/registry/linalg.ts';
import { truncateLayer } from '../src/registry/low-rank.ts';
import { buildMerge } from '../src/registry/merge-build.ts';

const { values: args } = parseArgs({
  options: {
    parts: { type: 'string', default: 'cold,stall,truncate,churn' },
    seconds: { type: 'string', default: '120' },
    trials: { type: 'string', default: '31' },
    warmup: { type: 'string', default: '15' },
    baseline: { type: 'string' },
  },
});
const PARTS = new Set(args.parts.split(','));
const SECONDS = Number(args.seconds);
const TRIALS = Number(args.trials);
const WARMUP = Number(args.warmup);
if (PARTS.has('churn') && !(SECONDS > WARMUP)) {
  console.error(`bench:registry: --seconds (${SECONDS}) must exceed --warmup (${WARMUP}): churn figures are taken after the warm-up`);
  process.exit(2);
}
const N = 200;
const CACHED = 20;
const SPEC = { modules: ['c_attn'], rank: 16 };
const BIG = { modules: ['c_attn', 'c_proj', 'c_fc'], rank: 64 };
const MODEL = 'tiny-gpt2';

const target = await realTarget(MODEL);
const dir = await tempDir('patchbay-bench-registry-');
for (let i = 0; i < N; i++) await writeLora(path.join(dir, `a${String(i).padStart(3, '0')}`), target, { ...SPEC, seed: 1000 + i });
const STALL_LOADS = 12;
for (let i = 0; i < STALL_LOADS; i++) await writeLora(path.join(dir, `big${i}`), target, { ...BIG, seed: 5000 + i });
const oneBytes = loraBytes(target, SPEC);
const ids = Array.from({ length: N }, (_, i) => `a${String(i).padStart(3, '0')}`);
console.log(`${N} rank-${SPEC.rank} LoRA adapters on ${SPEC.modules.join(',')} in ${dir}, ${oneBytes} bytes of factors each`);

const body = (model: string, maxTokens = 1) => ({ model, prompt: 'ROMEO.\nBut soft, what light', max_tokens: maxTokens, temperature: 0, ignore_eos: true });
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms (range ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;

async function scrape(server: ServerProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+|NaN)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}
const sumOf = (m: Map<string, number>, prefix: string) => [...m].filter(([k]) => k.startsWith(prefix)).reduce((s, [, v]) => s + v, 0);

async function rssMiB(server: ServerProcess): Promise<number> {
  const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** Arrival times (ms) of the streamed SSE events of one completion. */
async function streamTimes(url: string, model: string, maxTokens: number): Promise<number[]> {
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body(model, maxTokens), stream: true }) });
  if (!res.ok || !res.body) throw new Error(`stream failed: ${res.status}`);
  const times: number[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    const events = decoder.decode(chunk, { stream: true }).split('data: ').length - 1;
    for (let i = 0; i < events; i++) times.push(performance.now());
  }
  return times;
}
const gaps = (times: number[]) => times.slice(2).map((t, i) => t - times[i + 1]!); // from the 2nd token on: decode steps only

// ---- 1. cold vs warm -------------------------------------------------------------------------------------
if (PARTS.has('cold')) {
  const env = { PATCHBAY_ADAPTER_DIR: dir, PATCHBAY_CACHE_BYTES: String(64 << 20), PATCHBAY_THREADS: '1' };
  const contenders: Array<{ name: string; server: ServerProcess; cold: number[]; warm: number[]; base: number[]; ratios: number[] }> = [];
  contenders.push({ name: 'current', server: await startServer(env), cold: [], warm: [], base: [], ratios: [] });
  if (args.baseline) contenders.push({ name: `baseline (${args.baseline})`, server: await startServer(env, args.baseline), cold: [], warm: [], base: [], ratios: [] });
  try {
    for (const c of contenders) for (let i = 0; i < 3; i++) await timeCompletion(c.server.url, body(MODEL)); // warm the base path
    for (let t = 0; t < TRIALS; t++) {
      const id = ids[N - 1 - t]!;
      for (const c of t % 2 === 0 ? contenders : [...contenders].reverse()) {
        c.base.push((await timeCompletion(c.server.url, body(MODEL))).ms);
        const cold = (await timeCompletion(c.server.url, body(id))).ms;
        const warm = (await timeCompletion(c.server.url, body(id))).ms;
        c.cold.push(cold);
        c.warm.push(warm);
        c.ratios.push(cold / warm);
      }
    }
    console.log(`\ncold vs warm, rank ${SPEC.rank}, ${TRIALS} interleaved trials, time to first token (1-token completion):`);
    for (const c of contenders) {
      const m = await scrape(c.server);
      const loadSum = sumOf(m, 'patchbay_adapter_load_duration_seconds_sum');
      const loadCount = sumOf(m, 'patchbay_adapter_load_duration_seconds_count');
      console.log(` ${c.name}:`);
      console.log(`  base  ${fmt(c.base)}`);
      console.log(`  warm  ${fmt(c.warm)}`);
      console.log(`  cold  ${fmt(c.cold)}`);
      console.log(`  cold / warm = ${(median(c.cold) / median(c.warm)).toFixed(2)}× (medians); median of per-trial ratios ${median(c.ratios).toFixed(2)}×  (goal ≤ 1.5×)`);
      console.log(`  swap (adapter.load: read + validate + compile), mean of ${loadCount}: ${((loadSum / loadCount) * 1000).toFixed(2)} ms`);
    }
  } finally {
    for (const c of contenders) await c.server.stop();
  }
}

// ---- 2. decode stall -------------------------------------------------------------------------------------
if (PARTS.has('stall')) {
  const server = await startServer({ PATCHBAY_ADAPTER_DIR: dir, PATCHBAY_CACHE_BYTES: String(256 << 20), PATCHBAY_THREADS: '1' });
  try {
    const TOKENS = 48;
    for (let i = 0; i < 2; i++) await streamTimes(server.url, MODEL, 8);
    const alone: number[] = [];
    const loaded: number[] = [];
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      alone.push(...gaps(await streamTimes(server.url, MODEL, TOKENS)));
      // Cold loads of 4-MiB adapters one after another while the base stream decodes.
      const stream = streamTimes(server.url, MODEL, TOKENS);
      const loads = (async () => {
        for (let i = round * 4; i < round * 4 + 4; i++) await timeCompletion(server.url, body(`big${i}`));
      })();
      const [times] = await Promise.all([stream, loads]);
      loaded.push(...gaps(times));
    }
    const m = await scrape(server);
    const count = sumOf(m, 'patchbay_adapter_load_duration_seconds_count');
    const mean = (sumOf(m, 'patchbay_adapter_load_duration_seconds_sum') / count) * 1000;
    console.log(`\ndecode stall: gaps between streamed tokens of a ${TOKENS}-token base completion, ${ROUNDS} rounds, alone vs during cold loads of rank-${BIG.rank} all-linear adapters (${(loraBytes(target, BIG) / 2 ** 20).toFixed(1)} MiB of factors; adapter.load mean ${mean.toFixed(1)} ms):`);
    console.log(`  alone        p50 ${pct(alone, 50).toFixed(1)} ms, p99 ${pct(alone, 99).toFixed(1)} ms, max ${Math.max(...alone).toFixed(1)} ms`);
    console.log(`  during loads p50 ${pct(loaded, 50).toFixed(1)} ms, p99 ${pct(loaded, 99).toFixed(1)} ms, max ${Math.max(...loaded).toFixed(1)} ms`);
  } finally {
    await server.stop();
  }
}

// ---- 3. churn ----------------------------------------------------------------------------------------------
if (PARTS.has('churn')) {
  // Zipf(s) over ranks 1..N, by inverse CDF on a seeded generator.
  const s = 1.1;
  const w = ids.map((_, k) => 1 / (k + 1) ** s);
  const total = w.reduce((a, b) => a + b, 0);
  const cdf: number[] = [];
  w.reduce((acc, x, i) => (cdf[i] = acc + x / total), 0);
  let seed = 42;
  const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const draw = () => {
    const u = rand();
    const k = cdf.findIndex((c) => c >= u);
    return ids[k < 0 ? N - 1 : k]!;
  };

  const server = await startServer({ PATCHBAY_ADAPTER_DIR: dir, PATCHBAY_CACHE_BYTES: String(CACHED * oneBytes), PATCHBAY_THREADS: '1' });
  try {
    const latencies: number[] = [];
    let errors = 0;
    let warmStats: Map<string, number> | undefined;
    let warmRss = 0;
    const started = performance.now();
    const end = started + SECONDS * 1000;
    const worker = async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await timeCompletion(server.url, body(draw(), 2));
          if (t0 - started >= WARMUP * 1000) latencies.push(performance.now() - t0);
        } catch (err) {
          errors++;
          if (errors <= 3) console.error(String(err));
        }
      }
    };
    const sampler = (async () => {
      await new Promise((r) => setTimeout(r, WARMUP * 1000));
      warmStats = await scrape(server);
      warmRss = await rssMiB(server);
    })();
    await Promise.all([...Array.from({ length: 8 }, worker), sampler]);
    const endStats = await scrape(server);
    const endRss = await rssMiB(server);
    const hits = endStats.get('patchbay_adapter_cache_hits_total')! - warmStats!.get('patchbay_adapter_cache_hits_total')!;
    const misses = endStats.get('patchbay_adapter_cache_misses_total')! - warmStats!.get('patchbay_adapter_cache_misses_total')!;
    const revived = (endStats.get('patchbay_adapter_cache_revived_total') ?? 0) - (warmStats!.get('patchbay_adapter_cache_revived_total') ?? 0);
    console.log(`\nchurn: ${N} adapters, cache ${CACHED * oneBytes} bytes (${CACHED} adapters), Zipf s=${s}, concurrency 8, ${SECONDS} s (first ${WARMUP} s warm-up):`);
    console.log(`  requests ${latencies.length} after warm-up, errors ${errors}`);
    console.log(`  hit rate ${((100 * hits) / (hits + misses + revived)).toFixed(1)}% (hits ${hits}, misses ${misses}, revived ${revived}), evictions ${endStats.get('patchbay_adapter_cache_evictions_total')}`);
    console.log(`  latency p50 ${pct(latencies, 50).toFixed(1)} ms, p99 ${pct(latencies, 99).toFixed(1)} ms (2-token completions)`);
    console.log(`  resident ${endStats.get('patchbay_adapter_resident_bytes')} bytes of ${endStats.get('patchbay_adapter_cache_capacity_bytes')}`);
    console.log(`  server RSS after warm-up ${warmRss.toFixed(1)} MiB, at the end ${endRss.toFixed(1)} MiB`);
  } finally {
    await server.stop();
  }
}
// ---- 4. truncation ---------------------------------------------------------------------------------------
if (PARTS.has('truncate')) {
  let seed = 7;
  const rand = (n: number) => Float32Array.from({ length: n }, () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
  const layer = (dIn: number, dOut: number, R: number) => ({ rank: R, a: rand(dIn * R), b: rand(R * dOut) });
  console.log(`\ndense truncation to rank 16 (one layer, float64 work, ms; ${TRIALS > 5 ? 3 : 1} interleaved trials each):`);
  for (const [dIn, dOut, R] of [[96, 256, 100], [192, 512, 200], [288, 768, 300]] as const) {
    const f = layer(dIn, dOut, R);
    const gram: number[] = [];
    const jacobi: number[] = [];
    for (let t = 0; t < (TRIALS > 5 ? 3 : 1); t++) {
      let s = performance.now();
      truncateLayer(f, 16);
      gram.push(performance.now() - s);
      s = performance.now();
      svd(multiply(matrix(dIn, R, f.a), matrix(R, dOut, f.b)));
      jacobi.push(performance.now() - s);
    }
    console.log(`  ${dIn}×${dOut}, R=${R}: Gram ${median(gram).toFixed(0)}  Jacobi on M ${median(jacobi).toFixed(0)}  → ${(median(jacobi) / median(gram)).toFixed(1)}× faster`);
  }
  const big = layer(576, 1536, 600);
  const times: number[] = [];
  for (let t = 0; t < 2; t++) {
    const s = performance.now();
    truncateLayer(big, 16);
    times.push(performance.now() - s);
  }
  console.log(`  576×1536, R=600 (SmolLM2 MLP shape): Gram ${median(times).toFixed(0)} ms (Jacobi on M not run: O(n²·m) per sweep, minutes)`);
  const parts = [0, 1].map(() => ({ binding: { key: 'x', layers: new Map(['l0', 'l1', 'l2', 'l3'].map((n) => [n, layer(576, 1536, 300)] as const)) }, weight: 0.5 }));
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  delay.enable();
  const s = performance.now();
  await buildMerge('bench', parts, 16);
  const ms = performance.now() - s;
  delay.disable();
  clearInterval(ticker);
  console.log(`  merge of 2 × 4 modules 576×1536 (R=600 after concatenation) to rank 16: ${ms.toFixed(0)} ms; event loop max delay ${(delay.max / 1e6).toFixed(0)} ms, a 5-ms timer fired ${ticks} times`);
}

await removeTempDirs();
