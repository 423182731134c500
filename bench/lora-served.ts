/**
 * bench/lora-served — where a served LoRA request's extra time goes, against the base, on one server.
 *
 * One Patchbay server (a child process, as bench:serve runs it) on the q4 import; requests alternate base /
 * adapter, one at a time (interleaved trials), and each is split into phases from the server's own
 * Prometheus metrics, scraped before and after it (nothing runs in between, so the differences are this
 * request's):
 *   client      HTTP round trip seen by the client
 *   server      patchbay_http_request_duration_seconds (arrival → last byte)
 *   prefill     patchbay_step_duration_seconds{kind="prefill"} (one batched run of the prompt)
 *   decode      the same, kind="decode": sum over the request's steps, and per graph (plain / delta /
 *               delta-used: which session ran the step)
 *   rest        server − prefill − decode: routing, adapter resolution, tokenization, sampling,
 *               detokenization, the scheduler's setImmediate between steps
 * The first adapter request on a fresh server is reported on its own (cold: it may run its first steps on
 * the full delta graph and wait for a reduced-branch session build), then `--trials` interleaved pairs.
 * cpu is the server process's CPU time over the request (all threads, from its process metrics): less
 * sensitive than wall time to other jobs on a shared machine (it still counts ORT's pool spinning).
 * --compare-env starts a second server with other settings (e.g. PATCHBAY_BRANCH_SESSIONS_AHEAD=off) whose
 * base and adapter requests join the same interleaved rounds.
 * With --concurrency N > 1 also N concurrent base requests vs N concurrent adapter requests (wall time).
 *
 *   npm run bench:lora-served -- [--model models/smollm2-135m-q4] [--lora lora-smollm2-bard] [--tokens 32]
 *                                [--trials 9] [--threads 2] [--concurrency 8] [--env KEY=VALUE,…]
 *                                [--compare-env KEY=VALUE,…]
 */
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { startServer, timeCompletion } from './lib/server-process.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-q4' },
    lora: { type: 'string', default: 'lora-smollm2-bard' },
    prompt: { type: 'string', default: 'The capital of France is' },
    tokens: { type: 'string', default: '32' },
    trials: { type: 'string', default: '9' },
    threads: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '1' },
    env: { type: 'string', default: '' },
    'compare-env': { type: 'string' },
  },
});
const tokens = Number(args.tokens);
const trials = Number(args.trials);
const concurrency = Number(args.concurrency);
const envOf = (list: string) => Object.fromEntries(list.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
const modelDir = resolve(args.model);
const model = await readModelInfo(modelDir);
const load0 = loadavg();

interface Server {
  name: string;
  env: Record<string, string>;
  url: string;
  readyMs: number;
  stop(): Promise<void>;
}
async function start(name: string, env: Record<string, string>): Promise<Server> {
  const startedAt = performance.now();
  const p = await startServer({ PATCHBAY_MODEL_DIR: modelDir, PATCHBAY_THREADS: args.threads, PATCHBAY_MAX_BATCH: String(Math.max(concurrency, 1)), ...env });
  return { name, env, url: p.url, readyMs: performance.now() - startedAt, stop: p.stop };
}
// One server at a time is started (and its start timed) before the next.
const servers = [await start('A', envOf(args.env))];
if (args['compare-env'] !== undefined) servers.push(await start('B', envOf(args['compare-env'])));

let stopping: Promise<void> | undefined;
const stopAll = () => (stopping ??= Promise.all(servers.map((s) => s.stop())).then(() => undefined));
process.once('SIGTERM', () => {
  // Reported first: the wrappers (npm, tsx) may not wait long for this process once they got the signal.
  console.log('\nSIGTERM: the rounds measured so far, then stopping the servers');
  try {
    report();
  } catch (err) {
    console.log(`nothing to report yet (${(err as Error).message})`);
  }
  void stopAll().then(() => process.exit(1));
});

/** Sums and counts of the series this bench reads, keyed by metric name plus labels. */
async function scrape(server: Server): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(patchbay_(?:step_duration_seconds_(?:sum|count)|http_request_duration_seconds_sum|process_cpu_seconds_total))(\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return out;
}

interface Phases {
  client: number;
  server: number;
  cpu: number;
  prefill: number;
  decode: number;
  steps: number;
  /** Decode steps per graph label. */
  graphs: Record<string, number>;
  prefillGraph: string;
}

async function timed(server: Server, id: string): Promise<Phases> {
  const before = await scrape(server);
  const { ms, completionTokens } = await timeCompletion(server.url, { model: id, prompt: args.prompt, max_tokens: tokens, temperature: 0, ignore_eos: true });
  if (completionTokens !== tokens) throw new Error(`${id}: ${completionTokens} tokens, wanted ${tokens}`);
  const after = await scrape(server);
  const p: Phases = { client: ms, server: 0, cpu: 0, prefill: 0, decode: 0, steps: 0, graphs: {}, prefillGraph: '' };
  for (const key of after.keys()) {
    const d = after.get(key)! - (before.get(key) ?? 0);
    if (d === 0) continue;
    if (key.startsWith('patchbay_process_cpu_seconds_total')) p.cpu += d * 1000;
    if (key.startsWith('patchbay_http_request_duration_seconds_sum') && key.includes('completions')) p.server += d * 1000;
    const kind = /kind="(\w+)"/.exec(key)?.[1];
    const graph = /graph="([\w-]+)"/.exec(key)?.[1];
    if (!kind || !graph) continue;
    if (key.startsWith('patchbay_step_duration_seconds_sum')) {
      if (kind === 'prefill') p.prefill += d * 1000;
      else p.decode += d * 1000;
    } else if (kind === 'decode') {
      p.steps += d;
      p.graphs[graph] = (p.graphs[graph] ?? 0) + d;
    } else p.prefillGraph = graph;
  }
  return p;
}

const fmt = (p: Phases) =>
  `client ${p.client.toFixed(1)} ms, server ${p.server.toFixed(1)}, cpu ${p.cpu.toFixed(0)}, prefill ${p.prefill.toFixed(1)} (${p.prefillGraph}), ` +
  `decode ${p.decode.toFixed(1)} over ${p.steps} steps ${JSON.stringify(p.graphs)}, rest ${(p.server - p.prefill - p.decode).toFixed(1)}`;

for (const server of servers) {
  // Base first (warms the plain session), then the first adapter request on this server: the cold one; a
  // second one, so that a reduced-branch session build started by the first has finished.
  console.log(`server ${server.name} ${JSON.stringify(server.env)}: start → ready ${server.readyMs.toFixed(0)} ms`);
  console.log(`  first base request:     ${fmt(await timed(server, model.id))}`);
  console.log(`  first adapter request:  ${fmt(await timed(server, args.lora))}`);
  console.log(`  second adapter request: ${fmt(await timed(server, args.lora))}`);
}

const settle = () => new Promise((r) => setTimeout(r, 250));
const series = servers.flatMap((server) => [
  { server, label: `${server.name} base`, id: model.id, runs: [] as Phases[], concurrent: [] as number[] },
  { server, label: `${server.name} adapter`, id: args.lora, runs: [] as Phases[], concurrent: [] as number[] },
]);
/** Each round runs every series once, in an order rotated per round, so none always follows the same one. */
const rotated = (t: number) => series.map((_, i) => series[(i + t) % series.length]!);
for (let t = 0; t < trials; t++) {
  for (const s of rotated(t)) {
    await settle();
    s.runs.push(await timed(s.server, s.id));
  }
}
if (concurrency > 1) {
  const prompts = Array.from({ length: concurrency }, (_, i) => `${args.prompt} ${'and '.repeat(i % 3)}`.trim());
  for (let t = 0; t < Math.max(3, Math.ceil(trials / 3)); t++) {
    for (const s of rotated(t)) {
      await settle();
      const started = performance.now();
      await Promise.all(prompts.map((p) => timeCompletion(s.server.url, { model: s.id, prompt: p, max_tokens: tokens, temperature: 0, ignore_eos: true })));
      s.concurrent.push(performance.now() - started);
    }
  }
}
await stopAll();
report();

/** Prints what was measured so far (also on SIGTERM, e.g. a `timeout` around a run on a busy machine). */
function report(): void {
  const load1 = loadavg();

  const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
  const cell = (xs: number[]) => `${median(xs).toFixed(1)} (${range(xs)})`;
  console.log(`\nbench/lora-served — ${args.model} + ${args.lora}, ${tokens} new tokens, ${args.threads} thread(s), ${series[0]!.runs.length} interleaved rounds`);
  console.log(`load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${load1.map((x) => x.toFixed(2)).join(' ')}`);
  const phases: [string, (p: Phases) => number][] = [
    ['client (HTTP)', (p) => p.client],
    ['server', (p) => p.server],
    ['server CPU', (p) => p.cpu],
    ['prefill step', (p) => p.prefill],
    ['decode steps (sum)', (p) => p.decode],
    ['decode step (mean)', (p) => p.decode / p.steps],
    ['rest (server − steps)', (p) => p.server - p.prefill - p.decode],
    ['client − server', (p) => p.client - p.server],
  ];
  console.log('phase, ms: median (range)'.padEnd(26) + series.map((s) => s.label.padStart(26)).join(''));
  for (const [name, pick] of phases) console.log(name.padEnd(26) + series.map((s) => cell(s.runs.map(pick)).padStart(26)).join(''));
  const graphsOf = (ps: Phases[]) => [...new Set(ps.map((p) => `prefill ${p.prefillGraph}, decode ${JSON.stringify(p.graphs)}`))].join(' | ');
  for (const s of series) console.log(`graphs ${s.label}: ${graphsOf(s.runs)}`);
  const results: Record<string, unknown> = {};
  for (const server of servers) {
    const [b, l] = series.filter((s) => s.server === server) as [(typeof series)[0], (typeof series)[0]];
    const ratio = (pick: (p: Phases) => number) => median(l.runs.map(pick)) / median(b.runs.map(pick));
    const pairs = l.runs.slice(0, b.runs.length).map((r, i) => r.client / b.runs[i]!.client);
    const out = { client: ratio((p) => p.client), cpu: ratio((p) => p.cpu), step: ratio((p) => p.decode / p.steps), pairMedian: median(pairs), pairRange: [Math.min(...pairs), Math.max(...pairs)] };
    results[server.name] = out;
    console.log(
      `server ${server.name}: adapter / base latency ${out.client.toFixed(3)} (per-round ratios median ${out.pairMedian.toFixed(3)}, ${out.pairRange.map((x) => x.toFixed(3)).join('–')}); ` +
        `CPU ${out.cpu.toFixed(3)}; decode step ${out.step.toFixed(3)}`,
    );
    if (concurrency > 1) console.log(`  ${concurrency} concurrent: base ${cell(b.concurrent)} ms, adapter ${cell(l.concurrent)} ms: ratio ${(median(l.concurrent) / median(b.concurrent)).toFixed(3)}`);
  }
}
