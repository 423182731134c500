/**
 * bench/serve — Patchbay's serving speed next to its floor and a peer, measured side by side in one run:
 *   1. batch-1 greedy decode: Patchbay over HTTP (child process) vs a bare onnxruntime-node generate loop
 *      vs @huggingface/transformers' text-generation pipeline, same ONNX file, prompt and token count;
 *   2. throughput of 8 concurrent requests (continuous batching) vs the batch-1 rate.
 * Each contender runs in a process of its own (bench/lib/contender.ts); trials interleave them so machine noise
 * hits all alike; medians are reported. The bare loop and the peer are timed inside their process (no IPC),
 * Patchbay from the client (HTTP included), so the ratio charges Patchbay for everything a user waits on.
 *
 *   npm run bench:serve -- [--model models/tiny-gpt2] [--tokens 64] [--trials 5] [--threads 2]
 *                          [--delta-targets none|attention|all-linear] [--plain-session auto|on|off]
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { HfTokenizer } from '../src/runtime/tokenizer.ts';
import { Contender } from './lib/contender.ts';
import { startServer, timeCompletion } from './lib/server-process.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    tokens: { type: 'string', default: '64' },
    trials: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '8' },
    /** Server settings to compare configurations (defaults: the server's own). */
    'delta-targets': { type: 'string' },
    'plain-session': { type: 'string' },
  },
});
const modelDir = resolve(args.model);
const wanted = Number(args.tokens);
const trials = Number(args.trials);
const threads = Number(args.threads);
const concurrency = Number(args.concurrency);
const prompts = ['ROMEO.\nBut soft, what light', 'KING HENRY.\nOnce more', 'HAMLET.\nTo be, or not', 'The capital of Veldor is',
  'JULIET.\nO Romeo, Romeo', 'MACBETH.\nIs this a dagger', 'PORTIA.\nThe quality of mercy', 'LEAR.\nBlow, winds'];

const model = await readModelInfo(modelDir);
const tokenizer = await HfTokenizer.load(modelDir);
const server = await startServer({
  PATCHBAY_MODEL_DIR: modelDir,
  PATCHBAY_THREADS: String(threads),
  PATCHBAY_MAX_BATCH: String(concurrency),
  ...(args['delta-targets'] ? { PATCHBAY_DELTA_TARGETS: args['delta-targets'] } : {}),
  ...(args['plain-session'] ? { PATCHBAY_PLAIN_SESSION: args['plain-session'] } : {}),
});
const bare = await Contender.start('bare', modelDir, threads);
const peer = await Contender.start('transformers.js', modelDir, threads);

const prompt = prompts[0]!;
const promptIds = tokenizer.encode(prompt);
const request = (p: string, maxTokens: number) => ({ model: model.id, prompt: p, max_tokens: maxTokens, temperature: 0, ignore_eos: true });

// Warm-up, and a check that every contender produces the same greedy tokens (ignore_eos: all produce `wanted`).
const warm = await timeCompletion(server.url, request(prompt, wanted));
const tokens = warm.completionTokens;
const bareText = (await bare.run({ prompt, tokens })).text;
if (bareText !== warm.text) throw new Error('bare loop and Patchbay disagree on the greedy text');
const peerText = (await peer.run({ prompt, tokens })).text;
if (peerText !== warm.text) console.warn(`note: transformers.js greedy text differs: ${JSON.stringify(peerText.slice(0, 60))}`);

/** ORT's idle intra-op threads spin for a while after a run; let them sleep before the next contender starts. */
const settle = () => new Promise((r) => setTimeout(r, 250));

const ms = { patchbay: [] as number[], bare: [] as number[], peer: [] as number[], concurrent: [] as number[] };
let concurrentTokens = 0;
for (let t = 0; t < trials; t++) {
  await settle();
  ms.patchbay.push((await timeCompletion(server.url, request(prompt, tokens))).ms);
  await settle();
  ms.bare.push((await bare.run({ prompt, tokens })).ms);
  await settle();
  ms.peer.push((await peer.run({ prompt, tokens })).ms);
  await settle();
  const started = performance.now();
  const all = await Promise.all(prompts.slice(0, concurrency).map((p) => timeCompletion(server.url, request(p, tokens))));
  ms.concurrent.push(performance.now() - started);
  concurrentTokens = all.reduce((n, r) => n + r.completionTokens, 0);
}
await server.stop();
bare.stop();
peer.stop();

const rate = (n: number, list: number[]) => (1000 * n) / median(list);
const results = {
  model: model.id,
  threads,
  promptTokens: promptIds.length,
  tokens,
  trials,
  batch1: {
    patchbayTokPerS: rate(tokens, ms.patchbay),
    bareOrtTokPerS: rate(tokens, ms.bare),
    transformersJsTokPerS: rate(tokens, ms.peer),
    latencyRatioPatchbayToBare: median(ms.patchbay) / median(ms.bare),
    speedRatioPatchbayToTransformersJs: median(ms.peer) / median(ms.patchbay),
  },
  concurrent: {
    requests: concurrency,
    tokPerS: rate(concurrentTokens, ms.concurrent),
    speedupOverBatch1: rate(concurrentTokens, ms.concurrent) / rate(tokens, ms.patchbay),
  },
  medianMs: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, median(v)])),
};

const w = [52, 12];
console.log(`\nbench/serve — ${model.id}, ${promptIds.length} prompt tokens → ${tokens} new tokens, ${trials} trials, ${threads} ORT threads`);
console.log(row(['measure', 'value'], w));
console.log(row(['Patchbay HTTP, batch 1 (tok/s)', results.batch1.patchbayTokPerS], w));
console.log(row(['bare onnxruntime-node loop, batch 1 (tok/s)', results.batch1.bareOrtTokPerS], w));
console.log(row(['transformers.js pipeline, batch 1 (tok/s)', results.batch1.transformersJsTokPerS], w));
console.log(row(['latency ratio Patchbay / bare ORT (target ≤ 1.05)', results.batch1.latencyRatioPatchbayToBare], w));
console.log(row(['speed ratio Patchbay / transformers.js (target ≥ 1)', results.batch1.speedRatioPatchbayToTransformersJs], w));
console.log(row([`Patchbay ${concurrency} concurrent requests (tok/s)`, results.concurrent.tokPerS], w));
console.log(row([`  speed-up over batch 1`, results.concurrent.speedupOverBatch1], w));
await mkdir('bench/out', { recursive: true });
await writeFile('bench/out/serve.json', JSON.stringify(results, null, 2));
