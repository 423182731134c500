/**
 * bench/kv-context — batch-1 decode speed against context length, old attention graph vs new, side by side:
 *   - concat: the ONNX contract's `present = Concat(past, new)` (what imports wrote before; `--attention concat`),
 *     driven through the runtime's Engine (BatchKv: the presents come back whole every step);
 *   - append: the default import (src/import/attention-core.ts), runtime-owned KV slots (slot-kv.ts): the
 *     graph only reads the cache and returns the step's own keys/values, which the Engine appends;
 *   - gqa: com.microsoft.GroupQueryAttention with past_key and present_key bound to one pre-allocated buffer
 *     (session.run fetches aliasing the feeds): ORT writes the new column in place, onnxruntime-node 1.30
 *     then copies the whole present buffer into a new JS ArrayBuffer (README, "KV cache"). Driven directly.
 * All three graphs are built in memory from one GGUF with the same weights (`--weights`), each with its own
 * session; one decode step of each contender in turn (interleaved), after a cache of 128 / 1k / 4k positions
 * (random values: the cost does not depend on them). Also the Concat-only graph (60 Concat nodes of the
 * model's cache shapes) of the previous session, for the copy's share.
 *
 *   npm run bench:kv-context -- --gguf <SmolLM2-135M-Instruct.Q4_1.gguf> [--weights q4] [--threads 2] [--steps 8]
 *                               [--contexts 128,1024,4096] [--contenders concat,append,gqa]
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { GgufFile } from '../src/runtime/gguf/index.ts';
import { readLlamaHparams } from '../src/import/llama-hparams.ts';
import { buildLlamaOnnx } from '../src/import/llama-onnx.ts';
import type { AttentionMode } from '../src/import/attention-core.ts';
import type { WeightsMode } from '../src/import/emit-linear.ts';
import { Engine } from '../src/runtime/engine.ts';
import { BatchKv } from '../src/runtime/batch-kv.ts';
import type { KvCache } from '../src/runtime/kv-layout.ts';
import { FLOAT, encodeModel, node, onnx, tensorValueInfo } from '../src/runtime/graph/onnx.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    gguf: { type: 'string' },
    weights: { type: 'string', default: 'q4' },
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '8' },
    contexts: { type: 'string', default: '128,1024,4096' },
    contenders: { type: 'string', default: 'concat,append,gqa' },
  },
});
if (!args.gguf) {
  console.error('bench:kv-context: --gguf <file.gguf> is required (e.g. tools/.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, from npm run model:smollm2)');
  process.exit(2);
}
const threads = Number(args.threads);
const steps = Number(args.steps);
const contexts = args.contexts.split(',').map(Number);
const modes = args.contenders.split(',') as AttentionMode[];
const opts = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 } as const;
const BLOCK = 256;

const file = GgufFile.open(args.gguf);
const hp = readLlamaHparams(file);
const shape = { numLayers: hp.layers, numKvHeads: hp.kvHeads, headDim: hp.headDim };
const sessions = new Map<AttentionMode, InferenceSession>();
for (const mode of modes) {
  const built = buildLlamaOnnx(file, hp, args.weights as WeightsMode, { attention: mode });
  sessions.set(mode, await InferenceSession.create(built.bytes, opts));
}
file.close();
const colFloats = hp.kvHeads * hp.headDim;
const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);

/** One contender's state at one context: `step()` runs one decode step and returns its ms. */
interface Runner {
  step(): Promise<number>;
}

function engineRunner(mode: 'concat' | 'append', len: number): Runner {
  const engine = new Engine({ session: sessions.get(mode)!, shape, vocabSize: hp.vocabSize, baseVersion: 0, contextLength: hp.contextLength, kvBlock: BLOCK });
  const filled = Array.from({ length: 2 * hp.layers }, () => new Tensor('float32', random(colFloats * len), [1, hp.kvHeads, len, hp.headDim]));
  let kv: KvCache;
  if (mode === 'concat') kv = BatchKv.empty(shape, 1).advance(filled, len, [len]);
  else {
    kv = engine.emptyKv(1);
    engine.kvLayout.advance(kv, Object.fromEntries(engine.kvLayout.outputs.map((n, i) => [n, filled[i]!])), len, [len]);
  }
  return {
    async step() {
      const t = performance.now();
      kv = (await engine.forward(kv, [[42]])).kv;
      return performance.now() - t;
    },
  };
}

function gqaRunner(len: number): Runner {
  const session = sessions.get('gqa')!;
  const capacity = Math.ceil((len + steps + 1) / BLOCK) * BLOCK;
  const past: Record<string, Tensor> = {};
  for (let i = 0; i < hp.layers; i++) {
    for (const kind of ['key', 'value']) {
      const data = new Float32Array(colFloats * capacity);
      data.set(random(colFloats * capacity).subarray(0, colFloats * len));
      past[`past_key_values.${i}.${kind}`] = new Tensor('float32', data, [1, hp.kvHeads, capacity, hp.headDim]);
    }
  }
  // present.* bound to the very tensors fed as past_key_values.*: ORT's GQA then shares the buffer.
  const fetches: Record<string, Tensor | null> = { logits: null };
  for (let i = 0; i < hp.layers; i++) for (const kind of ['key', 'value']) fetches[`present.${i}.${kind}`] = past[`past_key_values.${i}.${kind}`]!;
  let n = len;
  return {
    async step() {
      const t = performance.now();
      await session.run(
        {
          ...past,
          input_ids: new Tensor('int64', BigInt64Array.of(42n), [1, 1]),
          position_ids: new Tensor('int64', BigInt64Array.of(BigInt(n)), [1, 1]),
          seqlens_k: new Tensor('int32', Int32Array.of(n), [1]),
          total_sequence_length: new Tensor('int32', Int32Array.of(n + 1), []),
        },
        fetches as never,
      );
      n++;
      return performance.now() - t;
    },
  };
}

/** One Concat per layer and K/V along the sequence axis: exactly the copies the concat decoder's presents make. */
function concatOnlyGraph(): Uint8Array {
  const inputs = [];
  const outputs = [];
  const nodes = [];
  for (let i = 0; i < hp.layers; i++) for (const kind of ['key', 'value']) {
    const p = `past.${i}.${kind}`;
    const n = `new.${i}.${kind}`;
    inputs.push(tensorValueInfo(p, FLOAT, [1, hp.kvHeads, 'past', hp.headDim]), tensorValueInfo(n, FLOAT, [1, hp.kvHeads, 1, hp.headDim]));
    outputs.push(tensorValueInfo(`present.${i}.${kind}`, FLOAT, [1, hp.kvHeads, 'total', hp.headDim]));
    nodes.push(node('Concat', `concat.${i}.${kind}`, [p, n], [`present.${i}.${kind}`], [{ name: 'axis', type: 2, i: 2 }]));
  }
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'kv', input: inputs, output: outputs, node: nodes } }));
}
const concatOnly = await InferenceSession.create(concatOnlyGraph(), opts);
function concatOnlyRunner(len: number): Runner {
  const feeds: Record<string, Tensor> = {};
  for (let i = 0; i < hp.layers; i++) for (const kind of ['key', 'value']) {
    feeds[`past.${i}.${kind}`] = new Tensor('float32', random(colFloats * len), [1, hp.kvHeads, len, hp.headDim]);
    feeds[`new.${i}.${kind}`] = new Tensor('float32', random(colFloats), [1, hp.kvHeads, 1, hp.headDim]);
  }
  return {
    async step() {
      const t = performance.now();
      await concatOnly.run(feeds);
      return performance.now() - t;
    },
  };
}

const names = [...modes, 'concat-only'];
const results: { context: number; ms: Record<string, number[]> }[] = [];
const loadBefore = loadavg();
for (const len of contexts) {
  const runners: Record<string, Runner> = {};
  for (const mode of modes) runners[mode] = mode === 'gqa' ? gqaRunner(len) : engineRunner(mode as 'concat' | 'append', len);
  runners['concat-only'] = concatOnlyRunner(len);
  const ms: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) await runners[n]!.step(); // warm-up: first-run allocations
  for (let s = 0; s < steps; s++) for (const n of names) ms[n]!.push(await runners[n]!.step());
  results.push({ context: len, ms });
}
const loadAfter = loadavg();

console.log(`\nbench/kv-context — ${hp.name} (${args.weights}), ${threads} threads, batch 1, median [min–max] of ${steps} interleaved steps`);
console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
const w = [8, 10, ...names.map(() => 22), ...modes.filter((m) => m !== 'concat').map(() => 14)];
console.log(row(['context', 'KV MB', ...names.map((n) => `${n} ms`), ...modes.filter((m) => m !== 'concat').map((m) => `${m} speedup`)], w));
for (const r of results) {
  const med = (n: string) => median(r.ms[n]!);
  const cell = (n: string) => `${med(n).toFixed(1)} [${Math.min(...r.ms[n]!).toFixed(0)}–${Math.max(...r.ms[n]!).toFixed(0)}]`;
  const kvMB = (2 * hp.layers * colFloats * r.context * 4) / 1e6;
  console.log(row([String(r.context), kvMB, ...names.map(cell), ...modes.filter((m) => m !== 'concat').map((m) => (modes.includes('concat') ? `${(med('concat') / med(m)).toFixed(2)}×` : '—'))], w));
}
console.log('\ndecode tokens/s (1000 / median step ms):');
for (const r of results) console.log(`  ${r.context}: ${modes.map((m) => `${m} ${(1000 / median(r.ms[m]!)).toFixed(1)}`).join(', ')}`);
