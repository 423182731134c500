/**
 * bench/session-memory — resident memory of one ORT session per model, and whether ORT keeps the tied token
 * table once. Each configuration runs in a fresh child process (`node --expose-gc`):
 *   baseline  RSS with onnxruntime-node loaded and nothing else,
 *   session   RSS once the session is built, the model bytes dropped and garbage-collected,
 *   step      RSS after one batch-1 prefill of 8 tokens (activations, ORT's arena),
 * resident = session − baseline (median of --repeats processes). Variants per model: the graph as imported (the token table is one initializer
 * read by the embedding Gather and the head), and `head copy` (the head reads its own duplicate of every
 * initializer it shares): if ORT kept one copy of the shared table, `head copy` costs one table more. Each
 * with ORT's weight pre-packing on and off (session config `session.disable_prepacking`).
 *
 *   npm run bench:session-memory -- [--model models/smollm2-135m-q4 --model models/smollm2-135m] [--repeats 3]
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel, valueInfoDims, type TensorProto } from '../src/runtime/graph/onnx.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', multiple: true, default: ['models/smollm2-135m-q4', 'models/smollm2-135m'] },
    child: { type: 'string' },
    repeats: { type: 'string', default: '3' },
  },
});

interface Result {
  model: string;
  variant: 'as imported' | 'head copy';
  prepack: boolean;
  fileMB: number;
  sharedMB: number;
  baselineMB: number;
  residentMB: number;
  afterStepMB: number;
}

const MB = 1e6;
const rss = () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
};

/** Gives every MatMul-like consumer of a shared initializer its own copy; returns bytes and the shared size. */
function headCopy(bytes: Uint8Array, encode: boolean): { bytes: Uint8Array | undefined; sharedBytes: number } {
  const model = decodeModel(bytes);
  const g = model.graph!;
  const inits = new Map((g.initializer ?? []).map((t) => [t.name!, t]));
  const users = new Map<string, number>();
  for (const n of g.node ?? []) for (const i of n.input ?? []) if (inits.has(i)) users.set(i, (users.get(i) ?? 0) + 1);
  let sharedBytes = 0;
  const copies: TensorProto[] = [];
  for (const n of g.node ?? []) {
    if (n.opType !== 'MatMul' && n.opType !== 'MatMulNBits') continue;
    n.input = (n.input ?? []).map((i) => {
      const t = inits.get(i);
      if (!t || (users.get(i) ?? 0) < 2 || !t.rawData || t.rawData.byteLength < 1 << 20) return i;
      sharedBytes += t.rawData.byteLength;
      copies.push({ ...t, name: `${i}/head_copy` });
      return `${i}/head_copy`;
    });
  }
  g.initializer = [...(g.initializer ?? []), ...copies];
  return { bytes: encode ? encodeModel(model) : undefined, sharedBytes };
}

interface ChildSpec {
  model: string;
  variant: Result['variant'];
  prepack: boolean;
  /** The ONNX file to load (the parent writes the variant's bytes to a temp file). */
  file: string;
  fileBytes: number;
  sharedBytes: number;
  /** Graph inputs and their dims for a batch-1 prefill of 8 tokens. */
  inputs: [string, number[]][];
}

/** In a fresh process: only the session and its file bytes, so RSS differences are the session's. */
async function child(spec: ChildSpec): Promise<Result> {
  // Load ORT's native code with a trivial session first, so the baseline includes the library.
  await (await ort.InferenceSession.create(new Uint8Array(await readFile('models/tiny-gpt2/onnx/model.onnx')))).release();
  const baseline = rss();
  let bytes: Uint8Array | undefined = new Uint8Array(await readFile(spec.file));
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    ...(spec.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
  });
  bytes = undefined;
  await new Promise((r) => setTimeout(r, 200));
  const resident = rss();
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, dims] of spec.inputs) {
    const n = dims.reduce((a, b) => a * b, 1);
    feeds[name] = name.startsWith('past_') ? new ort.Tensor('float32', new Float32Array(n), dims) : new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(name === 'attention_mask' ? 1 : i)), dims);
  }
  await session.run(feeds);
  const afterStep = rss();
  await session.release();
  return {
    model: spec.model,
    variant: spec.variant,
    prepack: spec.prepack,
    fileMB: spec.fileBytes / MB,
    sharedMB: spec.sharedBytes / MB,
    baselineMB: baseline / MB,
    residentMB: (resident - baseline) / MB,
    afterStepMB: (afterStep - baseline) / MB,
  };
}

if (args.child) {
  process.stdout.write(JSON.stringify(await child(JSON.parse(args.child) as ChildSpec)));
} else {
  const load0 = loadavg();
  const results: Result[] = [];
  const tmp = await mkdtemp(join(tmpdir(), 'patchbay-session-memory-'));
  try {
    for (const model of args.model) {
      const original = new Uint8Array(await readFile(`${model}/onnx/model.onnx`));
      const inputs = (decodeModel(original).graph!.input ?? []).map((input): [string, number[]] => [
        input.name!,
        (valueInfoDims(input) ?? []).map((d) => (d === 'batch_size' ? 1 : d === 'sequence_length' || d === 'total_sequence_length' ? 8 : d === 'past_sequence_length' ? 0 : (d as number))),
      ]);
      const copy = headCopy(original, true);
      await writeFile(join(tmp, 'head-copy.onnx'), copy.bytes!);
      for (const variant of ['as imported', 'head copy'] as const) {
        for (const prepack of [true, false]) {
          const file = variant === 'head copy' ? join(tmp, 'head-copy.onnx') : `${model}/onnx/model.onnx`;
          const spec: ChildSpec = { model, variant, prepack, file, fileBytes: (await stat(file)).size, sharedBytes: copy.sharedBytes, inputs };
          // RSS moves by tens of MB with allocator and GC state: the median of a few fresh processes.
          const runs = Array.from({ length: Number(args.repeats) }, () => {
            const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/session-memory.ts', '--child', JSON.stringify(spec)], { maxBuffer: 1 << 20 });
            return JSON.parse(out.toString()) as Result;
          });
          results.push({ ...runs[0]!, residentMB: median(runs.map((r) => r.residentMB)), afterStepMB: median(runs.map((r) => r.afterStepMB)) });
        }
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  console.log(`bench/session-memory — resident = RSS with the session − RSS before it (ORT loaded), model bytes freed; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  console.log('model'.padEnd(24) + 'variant'.padEnd(13) + 'prepack'.padStart(8) + 'file MB'.padStart(9) + 'shared MB'.padStart(11) + 'resident MB'.padStart(13) + 'after step MB'.padStart(15));
  for (const r of results) {
    console.log(r.model.split('/').pop()!.padEnd(24) + r.variant.padEnd(13) + String(r.prepack).padStart(8) + r.fileMB.toFixed(0).padStart(9) + r.sharedMB.toFixed(1).padStart(11) + r.residentMB.toFixed(0).padStart(13) + r.afterStepMB.toFixed(0).padStart(15));
  }
}
