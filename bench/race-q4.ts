/**
 * bench/race-q4 — the 4-bit race alone: Patchbay on the exact-4-bit import at accuracy_level 0 (exact) and 4
 * (int8 activations, as llama.cpp's own Q4_1 × Q8_1 products), each with ORT's pool spinning on and off
 * (PATCHBAY_ORT_SPINNING), against llama.cpp (node-llama-cpp) on the same GGUF: batch-1 greedy decode and N
 * concurrent requests vs llama.cpp decoding N sequences. bench:serve runs the same race next to the f32
 * server, the bare ORT loop and transformers.js; this companion leaves those out (their f32 copies of the
 * weights need ~5 GB more memory), so it fits a host that is short of memory, and puts the spinning setting
 * side by side in one run. Each contender is a process of its own; medians (and ranges). By default the Patchbay
 * servers run one at a time, each with llama.cpp's trials interleaved with its own, and its ratio is taken
 * against those (an idle server measured to slow the running one); `--together` starts them all at once and
 * interleaves every contender's trials (the mode of the sessions before the fourth).
 * `--wide` adds the wide session (PATCHBAY_WIDE_SESSION: steps of ≥ 2 sequences on the model's float32 form
 * or at int8) to each Patchbay contender.
 *
 *   npm run bench:race-q4 -- --q4-model models/smollm2-135m-q4 --gguf <file.gguf>
 *        [--tokens 32] [--trials 3] [--threads 2] [--concurrency 8] [--levels 0,4] [--spinning on,off] [--wide off,f32,int8]
 *        [--no-llama] [--together]
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { Contender } from './lib/contender.ts';
import { startServer, timeCompletion, type ServerProcess } from './lib/server-process.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    'q4-model': { type: 'string', default: 'models/smollm2-135m-q4' },
    gguf: { type: 'string' },
    tokens: { type: 'string', default: '32' },
    trials: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '8' },
    levels: { type: 'string', default: '0,4' },
    spinning: { type: 'string', default: 'on,off' },
    wide: { type: 'string', default: 'off' },
    // Patchbay contenders only (ratios to the first one): on a loaded host llama.cpp's numbers mean nothing and take minutes.
    'no-llama': { type: 'boolean', default: false },
    together: { type: 'boolean', default: false },
  },
});
if (!args.gguf) throw new Error('--gguf <the GGUF the q4 model was imported from> is required');
const q4Dir = resolve(args['q4-model']);
const wanted = Number(args.tokens);
const trials = Number(args.trials);
const threads = Number(args.threads);
const concurrency = Number(args.concurrency);
const levels = args.levels.split(',');
const spinnings = args.spinning.split(',');
for (const l of levels) if (!/^[0-4]$/.test(l)) throw new Error(`--levels takes accuracy levels 0-4, got "${l}"`);
for (const s of spinnings) if (s !== 'on' && s !== 'off') throw new Error(`--spinning takes on and/or off, got "${s}"`);
const wides = args.wide.split(',');
for (const w of wides) if (!['off', 'f32', 'int8'].includes(w)) throw new Error(`--wide takes off, f32 and/or int8, got "${w}"`);
// bench:serve's `--prompts english`.
const PROMPTS = ['The capital of France is', 'Once upon a time, there was', 'The best way to learn a language is', 'Water boils at',
  'My favourite book is', 'The sea is', 'In the morning I usually', 'A good friend is someone who'];
const prompt = PROMPTS[0]!;
const batchPrompts = Array.from({ length: concurrency }, (_, i) => PROMPTS[i % PROMPTS.length]!);

const loadBefore = loadavg()[0]!;
const model = await readModelInfo(q4Dir);
interface Config {
  label: string;
  env: Record<string, string>;
}
const configs: Config[] = [];
for (const level of levels) {
  for (const spin of spinnings) {
    for (const wide of wides) {
      configs.push({
        label: `Patchbay q4 ${level === '0' ? 'exact (level 0)' : `level ${level}`}, spin ${spin}${wide === 'off' ? '' : `, wide ${wide}`}`,
        env: {
          PATCHBAY_MODEL_DIR: q4Dir,
          PATCHBAY_THREADS: String(threads),
          PATCHBAY_MAX_BATCH: String(concurrency),
          PATCHBAY_NBITS_ACCURACY: level,
          PATCHBAY_ORT_SPINNING: spin,
          PATCHBAY_WIDE_SESSION: wide,
        },
      });
    }
  }
}
const llama = args['no-llama'] ? undefined : await Contender.start('llama.cpp', resolve(args.gguf), threads, concurrency);
const request = (p: string, maxTokens: number) => ({ model: model.id, prompt: p, max_tokens: maxTokens, temperature: 0, ignore_eos: true });

/** ORT's idle pool threads may spin after a run; let them sleep before the next contender starts. */
const settle = () => new Promise((r) => setTimeout(r, 250));
type Times = { one: number[]; many: number[] };
const ms = new Map<string, Times>();
/** llama.cpp's trials taken in each Patchbay contender's window (one server at a time): its paired reference. */
const pairedLlama = new Map<string, Times>();
const record = (map: Map<string, Times>, label: string, kind: 'one' | 'many', v: number) => {
  const m = map.get(label) ?? { one: [], many: [] };
  m[kind].push(v);
  map.set(label, m);
};
const LLAMA = 'llama.cpp (node-llama-cpp)';
let tokens = wanted;
let manyTokens = 0;
const memory = new Map<string, ReturnType<typeof residentMiB>>();

async function patchbayTrial(label: string, server: ServerProcess): Promise<void> {
  await settle();
  record(ms, label, 'one', (await timeCompletion(server.url, request(prompt, tokens))).ms);
  await settle();
  const started = performance.now();
  const all = await Promise.all(batchPrompts.map((bp) => timeCompletion(server.url, request(bp, tokens))));
  record(ms, label, 'many', performance.now() - started);
  manyTokens = all.reduce((n, r) => n + r.completionTokens, 0);
}
async function llamaTrial(window?: string): Promise<void> {
  if (!llama) return;
  await settle();
  const one = (await llama.run({ prompt, tokens })).ms;
  await settle();
  const many = (await llama.run({ prompts: batchPrompts, tokens })).ms;
  for (const [map, label] of [[ms, LLAMA], ...(window ? [[pairedLlama, window]] : [])] as [Map<string, Times>, string][]) {
    record(map, label, 'one', one);
    record(map, label, 'many', many);
  }
}
/** Warm-up; every contender produces `tokens` tokens (ignore_eos), the greedy texts may differ (int8 vs exact). */
async function warmUp(server: ServerProcess, first: boolean): Promise<void> {
  const got = (await timeCompletion(server.url, request(prompt, tokens))).completionTokens;
  if (first) tokens = got;
  await Promise.all(batchPrompts.map((bp) => timeCompletion(server.url, request(bp, tokens))));
}

if (args.together) {
  // Every server alive at once, trials interleaved across all contenders (the previous sessions' mode).
  const servers: [Config, ServerProcess][] = [];
  for (const c of configs) servers.push([c, await startServer(c.env)]);
  for (const [i, [, server]] of servers.entries()) await warmUp(server, i === 0);
  await llama?.run({ prompt, tokens });
  for (let t = 0; t < trials; t++) {
    for (const [c, server] of servers) await patchbayTrial(c.label, server);
    await llamaTrial();
    console.error(`trial ${t + 1}/${trials} done, load average ${loadavg()[0]!.toFixed(1)}`);
  }
  for (const [c, server] of servers) memory.set(c.label, residentMiB(server.child.pid));
  for (const [, server] of servers) await server.stop();
} else {
  // One server at a time: idle servers measured to slow the one running (BENCHMARKS.md, fourth session);
  // llama.cpp's trials interleave with each server's, so every ratio is taken within one window.
  for (const [i, c] of configs.entries()) {
    const server = await startServer(c.env);
    await warmUp(server, i === 0);
    if (i === 0) await llama?.run({ prompt, tokens });
    for (let t = 0; t < trials; t++) {
      await patchbayTrial(c.label, server);
      await llamaTrial(c.label);
      console.error(`${c.label}: trial ${t + 1}/${trials} done, load average ${loadavg()[0]!.toFixed(1)}`);
    }
    memory.set(c.label, residentMiB(server.child.pid));
    await server.stop();
  }
}
llama?.stop();
const loadAfter = loadavg()[0]!;

const rate = (n: number, list: number[]) => (1000 * n) / median(list);
const span = (n: number, list: number[]) => `${((1000 * n) / Math.max(...list)).toFixed(1)}–${((1000 * n) / Math.min(...list)).toFixed(1)}`;
const firstLabel = configs[0]!.label;
console.log(`\nbench/race-q4 — ${model.id} vs llama.cpp on ${args.gguf}, ${tokens} new tokens, ${trials} trials, ${threads} threads, ${concurrency} concurrent; load average ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}`);
const w = [50, 12, 13, 8, 14, 13, 8, 10, 10];
const vs = llama ? '÷ llama' : '÷ first';
console.log(row(['contender', 'b1 tok/s', 'b1 range', vs, `${concurrency}× tok/s`, `${concurrency}× range`, vs, 'RSS MiB', 'peak MiB'], w));
for (const label of [...configs.map((c) => c.label), ...(llama ? [LLAMA] : [])]) {
  const m = ms.get(label)!;
  const mem = memory.get(label);
  // Each Patchbay contender against llama.cpp's trials in its own window (all of them with --together).
  const ref = llama ? (pairedLlama.get(label) ?? ms.get(LLAMA)!) : ms.get(firstLabel)!;
  console.log(row([label, rate(tokens, m.one), span(tokens, m.one), median(ref.one) / median(m.one), rate(manyTokens, m.many), span(manyTokens, m.many), median(ref.many) / median(m.many), mem?.rss ?? '—', mem?.peak ?? '—'], w));
}
console.log('goals (issue #6): batch-1 ÷ llama ≥ 1; concurrent ÷ llama ≥ 2');

function residentMiB(pid: number | undefined): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(/\s(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(key)) ?? '')?.[1] ?? NaN);
    return { rss: kb('VmRSS:') / 1024, peak: kb('VmHWM:') / 1024 };
  } catch {
    return undefined; // not Linux
  }
}
