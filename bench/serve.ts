/**
 * bench/serve — Patchbay's serving speed next to its floor and its peers, measured side by side in one run:
 *   1. batch-1 greedy decode: Patchbay over HTTP (child process) vs a bare onnxruntime-node generate loop
 *      vs @huggingface/transformers' text-generation pipeline, same ONNX file, prompt and token count;
 *      with --q4-model also Patchbay on the exact-4-bit import (and with --lora, an adapter on that q4 base; with
 *      --lora-full-graph also the same adapter on a second q4 server that never reduces the delta graph to the
 *      adapter's layers, PATCHBAY_BRANCH_SESSIONS=0: the cost of the empty branches, side by side), and
 *      the same import at accuracy_level 4 (PATCHBAY_NBITS_ACCURACY=4: int8 activations, as llama.cpp's own
 *      Q4_1 × Q8_1 dot products — fast, approximate; bench:quality gives its agreement with PyTorch) unless
 *      --no-int8;
 *      with --gguf also llama.cpp (node-llama-cpp's prebuilt CPU build) on the GGUF the models came from;
 *   2. throughput of N concurrent requests (continuous batching; on the q4 base when given, exact and int8)
 *      vs llama.cpp decoding N sequences of one context;
 *   with --compare-model also a second Patchbay server on another import of the q4 model (e.g. the same GGUF
 *      with `--attention concat`), batch 1 and N concurrent, in the same trials (issue #6: KV cache graphs);
 *   3. weight bytes each decode step reads (bench/lib/weight-bytes.ts) ÷ this process's measured memcpy
 *      bandwidth: the batch-1 floor, next to each contender's measured step time.
 * Each contender runs in a process of its own (bench/lib/contender.ts); trials interleave them so machine noise
 * hits all alike; medians (and ranges) are reported. The bare loop and the peers are timed inside their
 * process (no IPC), Patchbay from the client (HTTP included), so the ratio charges Patchbay for everything a
 * user waits on. All contenders get the same thread count.
 *
 *   npm run bench:serve -- [--model models/tiny-gpt2] [--tokens 64] [--trials 5] [--threads 2]
 *                          [--q4-model models/smollm2-135m-q4] [--gguf path/to/model.gguf] [--lora <adapter id>]
 *                          [--lora-full-graph] [--prompts shakespeare|english] [--delta-targets …] [--plain-session auto|on|off] [--no-int8]
 *                          [--compare-model tools/.cache/smollm2-q4-concat]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { HfTokenizer } from '../src/runtime/tokenizer.ts';
import { Contender } from './lib/contender.ts';
import { measureReadBandwidth } from './lib/bandwidth.ts';
import { decodeWeightBytes } from './lib/weight-bytes.ts';
import { startServer, timeCompletion, type ServerProcess } from './lib/server-process.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/tiny-gpt2' },
    'q4-model': { type: 'string' },
    gguf: { type: 'string' },
    lora: { type: 'string' },
    'lora-full-graph': { type: 'boolean', default: false },
    tokens: { type: 'string', default: '64' },
    trials: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '8' },
    prompts: { type: 'string', default: 'shakespeare' },
    /** Server settings to compare configurations (defaults: the server's own). */
    'delta-targets': { type: 'string' },
    'plain-session': { type: 'string' },
    /** Skip the q4 contender at accuracy_level 4 (int8 activations). */
    'no-int8': { type: 'boolean', default: false },
    'compare-model': { type: 'string' },
  },
});
const modelDir = resolve(args.model);
const q4Dir = args['q4-model'] ? resolve(args['q4-model']) : undefined;
const gguf = args.gguf ? resolve(args.gguf) : undefined;
const wanted = Number(args.tokens);
const trials = Number(args.trials);
const threads = Number(args.threads);
const concurrency = Number(args.concurrency);
const PROMPTS: Record<string, string[]> = {
  shakespeare: ['ROMEO.\nBut soft, what light', 'KING HENRY.\nOnce more', 'HAMLET.\nTo be, or not', 'The capital of Veldor is',
    'JULIET.\nO Romeo, Romeo', 'MACBETH.\nIs this a dagger', 'PORTIA.\nThe quality of mercy', 'LEAR.\nBlow, winds'],
  english: ['The capital of France is', 'Once upon a time, there was', 'The best way to learn a language is', 'Water boils at',
    'My favourite book is', 'The sea is', 'In the morning I usually', 'A good friend is someone who'],
};
const prompts = PROMPTS[args.prompts];
if (!prompts) throw new Error(`--prompts must be one of ${Object.keys(PROMPTS).join(', ')}`);
if (args.lora && !q4Dir) throw new Error('--lora needs --q4-model (the adapter is measured on the 4-bit base)');

const loadBefore = loadavg();
const model = await readModelInfo(modelDir);
const tokenizer = await HfTokenizer.load(modelDir);
const serverEnv = (dir: string) => ({
  PATCHBAY_MODEL_DIR: dir,
  PATCHBAY_THREADS: String(threads),
  PATCHBAY_MAX_BATCH: String(concurrency),
  ...(args['delta-targets'] ? { PATCHBAY_DELTA_TARGETS: args['delta-targets'] } : {}),
  ...(args['plain-session'] ? { PATCHBAY_PLAIN_SESSION: args['plain-session'] } : {}),
});
const server = await startServer(serverEnv(modelDir));
const q4Server: ServerProcess | undefined = q4Dir ? await startServer(serverEnv(q4Dir)) : undefined;
// The same 4-bit import served at accuracy_level 4 (int8 activations): the like-for-like contender for llama.cpp.
const int8Server: ServerProcess | undefined = q4Dir && !args['no-int8'] ? await startServer({ ...serverEnv(q4Dir), PATCHBAY_NBITS_ACCURACY: '4' }) : undefined;
const q4FullServer: ServerProcess | undefined =
  q4Dir && args.lora && args['lora-full-graph'] ? await startServer({ ...serverEnv(q4Dir), PATCHBAY_BRANCH_SESSIONS: '0' }) : undefined;
const q4Model = q4Dir ? await readModelInfo(q4Dir) : undefined;
const compareDir = args['compare-model'] ? resolve(args['compare-model']) : undefined;
const compareServer: ServerProcess | undefined = compareDir ? await startServer(serverEnv(compareDir)) : undefined;
const compareModel = compareDir ? await readModelInfo(compareDir) : undefined;
const bare = await Contender.start('bare', modelDir, threads);
const peer = await Contender.start('transformers.js', modelDir, threads);
const llama = gguf ? await Contender.start('llama.cpp', gguf, threads, concurrency) : undefined;

const prompt = prompts[0]!;
const promptIds = tokenizer.encode(prompt);
const request = (id: string, p: string, maxTokens: number) => ({ model: id, prompt: p, max_tokens: maxTokens, temperature: 0, ignore_eos: true });

// Warm-up, and a check that every contender produces the same greedy tokens (ignore_eos: all produce `wanted`).
const warm = await timeCompletion(server.url, request(model.id, prompt, wanted));
const tokens = warm.completionTokens;
const bareText = (await bare.run({ prompt, tokens })).text;
if (bareText !== warm.text) throw new Error('bare loop and Patchbay disagree on the greedy text');
const note = (who: string, text: string) => {
  if (text !== warm.text) console.warn(`note: ${who} greedy text differs from Patchbay f32: ${JSON.stringify(text.slice(0, 70))}`);
};
note('transformers.js', (await peer.run({ prompt, tokens })).text);
if (q4Server) note('Patchbay q4', (await timeCompletion(q4Server.url, request(q4Model!.id, prompt, tokens))).text);
if (int8Server) note('Patchbay q4 int8 (accuracy_level 4)', (await timeCompletion(int8Server.url, request(q4Model!.id, prompt, tokens))).text);
if (q4Server && args.lora) note(`Patchbay q4 + ${args.lora}`, (await timeCompletion(q4Server.url, request(args.lora, prompt, tokens))).text);
if (q4FullServer) note(`Patchbay q4 + ${args.lora} (full delta graph)`, (await timeCompletion(q4FullServer.url, request(args.lora!, prompt, tokens))).text);
if (llama) note('llama.cpp', (await llama.run({ prompt, tokens })).text);
if (compareServer) note(`Patchbay ${compareModel!.id}`, (await timeCompletion(compareServer.url, request(compareModel!.id, prompt, tokens))).text);

/** ORT's idle intra-op threads spin for a while after a run; let them sleep before the next contender starts. */
const settle = () => new Promise((r) => setTimeout(r, 250));

const ms: Record<string, number[]> = {};
const time = async (name: string, f: () => Promise<number>) => {
  await settle();
  (ms[name] ??= []).push(await f());
};
const batchPrompts = Array.from({ length: concurrency }, (_, i) => prompts[i % prompts.length]!);
const concurrentServer = q4Server ?? server;
const concurrentId = q4Model?.id ?? model.id;
let concurrentTokens = 0;
for (let t = 0; t < trials; t++) {
  await time('patchbay', async () => (await timeCompletion(server.url, request(model.id, prompt, tokens))).ms);
  if (q4Server) await time('patchbayQ4', async () => (await timeCompletion(q4Server.url, request(q4Model!.id, prompt, tokens))).ms);
  if (int8Server) await time('patchbayQ4Int8', async () => (await timeCompletion(int8Server.url, request(q4Model!.id, prompt, tokens))).ms);
  if (q4Server && args.lora) await time('patchbayQ4Lora', async () => (await timeCompletion(q4Server.url, request(args.lora!, prompt, tokens))).ms);
  if (q4FullServer) await time('patchbayQ4LoraFullGraph', async () => (await timeCompletion(q4FullServer.url, request(args.lora!, prompt, tokens))).ms);
  await time('bare', async () => (await bare.run({ prompt, tokens })).ms);
  await time('peer', async () => (await peer.run({ prompt, tokens })).ms);
  if (llama) await time('llamaCpp', async () => (await llama.run({ prompt, tokens })).ms);
  await time('concurrent', async () => {
    const started = performance.now();
    const all = await Promise.all(batchPrompts.map((p) => timeCompletion(concurrentServer.url, request(concurrentId, p, tokens))));
    concurrentTokens = all.reduce((n, r) => n + r.completionTokens, 0);
    return performance.now() - started;
  });
  if (int8Server) {
    await time('concurrentInt8', async () => {
      const started = performance.now();
      await Promise.all(batchPrompts.map((p) => timeCompletion(int8Server.url, request(concurrentId, p, tokens))));
      return performance.now() - started;
    });
  }
  if (llama) await time('llamaCppConcurrent', async () => (await llama.run({ prompts: batchPrompts, tokens })).ms);
  if (compareServer) {
    await time('compare', async () => (await timeCompletion(compareServer.url, request(compareModel!.id, prompt, tokens))).ms);
    await time('compareConcurrent', async () => {
      const started = performance.now();
      await Promise.all(batchPrompts.map((p) => timeCompletion(compareServer.url, request(compareModel!.id, p, tokens))));
      return performance.now() - started;
    });
  }
}
await server.stop();
await q4Server?.stop();
await int8Server?.stop();
await q4FullServer?.stop();
await compareServer?.stop();
bare.stop();
peer.stop();
llama?.stop();

const bandwidth = measureReadBandwidth();
const weightBytes = {
  f32: decodeWeightBytes(new Uint8Array(await readFile(model.onnxPath))),
  ...(q4Model ? { q4: decodeWeightBytes(new Uint8Array(await readFile(q4Model.onnxPath))) } : {}),
  // llama.cpp reads (nearly) every tensor of the file per token; the tied head reads the whole embedding.
  ...(gguf ? { gguf: (await stat(gguf)).size } : {}),
};
const rate = (n: number, list: number[] | undefined) => (list ? (1000 * n) / median(list) : Number.NaN);
const range = (list: number[] | undefined, n: number) => (list ? [Math.min(...list), Math.max(...list)].map((v) => (1000 * n) / v).reverse() : []);
const results = {
  loadAverage: { before: loadBefore, after: loadavg() },
  model: model.id,
  q4Model: q4Model?.id ?? null,
  gguf: gguf ?? null,
  lora: args.lora ?? null,
  threads,
  promptTokens: promptIds.length,
  tokens,
  trials,
  batch1TokPerS: Object.fromEntries(Object.entries(ms).filter(([k]) => !/concurrent/i.test(k)).map(([k, v]) => [k, rate(tokens, v)])),
  batch1RangeTokPerS: Object.fromEntries(Object.entries(ms).filter(([k]) => !/concurrent/i.test(k)).map(([k, v]) => [k, range(v, tokens)])),
  latencyRatioPatchbayToBare: median(ms.patchbay!) / median(ms.bare!),
  speedRatioPatchbayToTransformersJs: median(ms.peer!) / median(ms.patchbay!),
  ...(q4Server ? { speedRatioQ4ToF32: median(ms.patchbay!) / median(ms.patchbayQ4!) } : {}),
  ...(args.lora ? { latencyRatioQ4LoraToQ4: median(ms.patchbayQ4Lora!) / median(ms.patchbayQ4!) } : {}),
  ...(q4FullServer ? { latencyRatioQ4LoraFullGraphToQ4: median(ms.patchbayQ4LoraFullGraph!) / median(ms.patchbayQ4!) } : {}),
  ...(llama && q4Server ? { speedRatioQ4ToLlamaCpp: median(ms.llamaCpp!) / median(ms.patchbayQ4!) } : {}),
  ...(llama && int8Server ? { speedRatioQ4Int8ToLlamaCpp: median(ms.llamaCpp!) / median(ms.patchbayQ4Int8!) } : {}),
  ...(compareServer
    ? {
        compare: {
          model: compareModel!.id,
          dir: compareDir,
          batch1TokPerS: rate(tokens, ms.compare),
          concurrentTokPerS: rate(concurrentTokens, ms.compareConcurrent),
          batch1SpeedRatioQ4ToCompare: q4Server ? median(ms.compare!) / median(ms.patchbayQ4!) : Number.NaN,
          concurrentSpeedRatioToCompare: median(ms.compareConcurrent!) / median(ms.concurrent!),
        },
      }
    : {}),
  concurrent: {
    requests: concurrency,
    base: concurrentId,
    tokPerS: rate(concurrentTokens, ms.concurrent),
    speedupOverBatch1: rate(concurrentTokens, ms.concurrent) / rate(tokens, q4Server ? ms.patchbayQ4 : ms.patchbay),
    ...(llama ? { llamaCppTokPerS: rate(concurrentTokens, ms.llamaCppConcurrent), ratioToLlamaCpp: median(ms.llamaCppConcurrent!) / median(ms.concurrent!) } : {}),
    ...(int8Server ? { int8TokPerS: rate(concurrentTokens, ms.concurrentInt8) } : {}),
    ...(int8Server && llama ? { int8RatioToLlamaCpp: median(ms.llamaCppConcurrent!) / median(ms.concurrentInt8!) } : {}),
  },
  bandwidthGBps: bandwidth / 1e9,
  weightBytesPerToken: weightBytes,
  floorTokPerS: Object.fromEntries(Object.entries(weightBytes).map(([k, b]) => [k, bandwidth / b])),
  medianMs: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, median(v)])),
};

const w = [56, 12];
const line = (label: string, v: number | undefined) => v !== undefined && !Number.isNaN(v) && console.log(row([label, v], w));
console.log(`\nbench/serve — ${model.id}${q4Model ? ` + ${q4Model.id}` : ''}${gguf ? ' + llama.cpp' : ''}, ${promptIds.length} prompt tokens → ${tokens} new tokens, ${trials} trials, ${threads} threads`);
console.log(`load average (1/5/15 min) before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${results.loadAverage.after.map((x) => x.toFixed(2)).join(' ')}`);
console.log(row(['measure', 'value'], w));
line('Patchbay f32 HTTP, batch 1 (tok/s)', results.batch1TokPerS.patchbay);
line('Patchbay q4 HTTP, batch 1 (tok/s)', results.batch1TokPerS.patchbayQ4);
line('Patchbay q4 int8 (accuracy_level 4) HTTP, batch 1 (tok/s)', results.batch1TokPerS.patchbayQ4Int8);
line(`Patchbay q4 + ${args.lora} HTTP, batch 1 (tok/s)`, results.batch1TokPerS.patchbayQ4Lora);
line(`  same, full delta graph (BRANCH_SESSIONS=0) (tok/s)`, results.batch1TokPerS.patchbayQ4LoraFullGraph);
line('bare onnxruntime-node loop f32, batch 1 (tok/s)', results.batch1TokPerS.bare);
line('transformers.js pipeline f32, batch 1 (tok/s)', results.batch1TokPerS.peer);
line('llama.cpp (node-llama-cpp), batch 1 (tok/s)', results.batch1TokPerS.llamaCpp);
line('latency ratio Patchbay f32 / bare ORT (target ≤ 1.05)', results.latencyRatioPatchbayToBare);
line('speed ratio Patchbay f32 / transformers.js (target ≥ 1)', results.speedRatioPatchbayToTransformersJs);
line('speed ratio Patchbay q4 / f32', results.speedRatioQ4ToF32);
line('speed ratio Patchbay q4 / llama.cpp (goal ≥ 1)', results.speedRatioQ4ToLlamaCpp);
line('speed ratio Patchbay q4 int8 / llama.cpp (goal ≥ 1)', results.speedRatioQ4Int8ToLlamaCpp);
line(`latency ratio q4 + LoRA / q4 base (goal ≤ 1.05)`, results.latencyRatioQ4LoraToQ4);
line(`  same on the full delta graph (before the fix)`, results.latencyRatioQ4LoraFullGraphToQ4);
line(`Patchbay ${concurrency} concurrent on ${concurrentId} (tok/s)`, results.concurrent.tokPerS);
line(`  speed-up over batch 1`, results.concurrent.speedupOverBatch1);
line(`llama.cpp ${concurrency} sequences (tok/s)`, results.concurrent.llamaCppTokPerS);
line(`  Patchbay / llama.cpp at ${concurrency} (goal ≥ 2)`, results.concurrent.ratioToLlamaCpp);
line(`Patchbay ${concurrency} concurrent, q4 int8 (tok/s)`, results.concurrent.int8TokPerS);
line(`  Patchbay int8 / llama.cpp at ${concurrency} (goal ≥ 2)`, results.concurrent.int8RatioToLlamaCpp);
if (results.compare) {
  line(`Patchbay ${results.compare.model} (${compareDir}) HTTP, batch 1 (tok/s)`, results.compare.batch1TokPerS);
  line(`  speed ratio Patchbay q4 / it, batch 1`, results.compare.batch1SpeedRatioQ4ToCompare);
  line(`Patchbay ${concurrency} concurrent on it (tok/s)`, results.compare.concurrentTokPerS);
  line(`  speed ratio ${concurrentId} / it, ${concurrency} concurrent`, results.compare.concurrentSpeedRatioToCompare);
}
line('memcpy read bandwidth, 1 thread (GB/s)', results.bandwidthGBps);
for (const [k, b] of Object.entries(weightBytes)) line(`${k}: weight MB per token → floor tok/s`, b / 1e6), line(`  floor (bandwidth ÷ bytes) tok/s`, results.floorTokPerS[k]);
await mkdir('bench/out', { recursive: true });
await writeFile('bench/out/serve.json', JSON.stringify(results, null, 2));
