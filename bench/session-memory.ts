/**
 * bench/session-memory — resident memory of one ORT session per model, and whether ORT keeps the tied token
 * table once. Each configuration runs in a fresh child process (`node --expose-gc`):
 *   first     RSS growth by a first session (less the model bytes still held): includes heap the parse freed but
 *             the allocator kept, so it overstates,
 *   per extra RSS growth per further session of the same bytes (2nd, 3rd), which reuse that heap: what one more
 *             session costs (the plain and reduced-branch sessions are such extra sessions); glibc is told never
 *             to trim or mmap (MALLOC_* env), so freed memory stays and RSS only grows,
 *   + step    growth after one batch-1 prefill of 8 tokens on the last session (activations, ORT's arena),
 * each the median of --repeats processes. Variants per model: the graph as imported (the token table is one initializer
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
  /** RSS growth by the first session, minus the file bytes still held at that point. */
  firstMB: number;
  /** RSS growth per further session of the same bytes (2nd and 3rd). */
  residentMB: number;
  /** Further growth after one batch-1 prefill of 8 tokens on the last session. */
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
  const bytes = new Uint8Array(await readFile(spec.file));
  const create = () =>
    ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      ...(spec.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
    });
  const settle = async () => {
    await new Promise((r) => setTimeout(r, 200));
    return rss();
  };
  // The first session's figure includes heap the model parse freed but the allocator kept; later sessions of
  // the same bytes reuse that heap (the parent runs us with glibc told never to trim or mmap, so RSS only
  // grows), so the growth per later session is what one more session costs.
  const sessions = [await create()];
  const afterFirst = await settle();
  sessions.push(await create());
  sessions.push(await create());
  const afterThird = await settle();
  const second = sessions[2]!;
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, dims] of spec.inputs) {
    const n = dims.reduce((a, b) => a * b, 1);
    feeds[name] = name.startsWith('past_') ? new ort.Tensor('float32', new Float32Array(n), dims) : new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(name === 'attention_mask' ? 1 : i)), dims);
  }
  await second.run(feeds);
  const afterStep = await settle();
  for (const x of sessions) await x.release();
  return {
    model: spec.model,
    variant: spec.variant,
    prepack: spec.prepack,
    fileMB: spec.fileBytes / MB,
    sharedMB: spec.sharedBytes / MB,
    baselineMB: baseline / MB,
    firstMB: (afterFirst - baseline - spec.fileBytes) / MB,
    residentMB: (afterThird - afterFirst) / 2 / MB,
    afterStepMB: (afterStep - afterThird) / MB,
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
            const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', 'bench/session-memory.ts', '--child', JSON.stringify(spec)], {
              maxBuffer: 1 << 20,
              env: { ...process.env, MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: String(2 ** 40), MALLOC_MMAP_THRESHOLD_: String(2 ** 30), MALLOC_TOP_PAD_: '0' },
            });
            return JSON.parse(out.toString()) as Result;
          });
          results.push({ ...runs[0]!, firstMB: median(runs.map((r) => r.firstMB)), residentMB: median(runs.map((r) => r.residentMB)), afterStepMB: median(runs.map((r) => r.afterStepMB)) });
        }
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  console.log(`bench/session-memory — RSS growth per session (medians of ${args.repeats} processes); load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  console.log('  first: by the first session, less the file bytes held (overstates: parse heap); per extra: by each further session of');
  console.log('  the same bytes; + step: after a batch-1 prefill of 8 tokens on it. shared = the tied table (what `head copy` duplicates).');
  console.log('model'.padEnd(18) + 'variant'.padEnd(13) + 'prepack'.padStart(8) + 'file MB'.padStart(9) + 'shared MB'.padStart(11) + 'first MB'.padStart(10) + 'per extra MB'.padStart(14) + '+ step MB'.padStart(11));
  for (const r of results) {
    console.log(r.model.split('/').pop()!.padEnd(18) + r.variant.padEnd(13) + String(r.prepack).padStart(8) + r.fileMB.toFixed(0).padStart(9) + r.sharedMB.toFixed(1).padStart(11) + r.firstMB.toFixed(0).padStart(10) + r.residentMB.toFixed(0).padStart(14) + r.afterStepMB.toFixed(0).padStart(11));
  }
}
