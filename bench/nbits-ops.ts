/**
 * bench/nbits-ops — one SmolLM2-sized Q4_1 layer (K = 576, N = 1536, batch 1 × 1 token, the decode shape) as
 * MatMulNBits three ways, interleaved in one process, median µs per run:
 *   sym+corr   symmetric 4-bit (zp 8) + the blocksum·offset correction (what the importer emits)
 *   float zp   MatMulNBits with float zero points zp = 8 − offset/scale (exact too, no extra nodes)
 *   f32        a plain MatMul on the dequantized weight
 * each at accuracy_level 0 and 4; and the outputs' max difference to the f32 result.
 * Further parts (`--parts`, issue #6's race), each timed the same way with `--rows` rows per run:
 *   fusion    SmolLM2's q/k/v (N = 576/192/192) and gate/up (1536/1536) as separate MatMulNBits layers vs
 *             one layer each with the outputs side by side (what a fused import would run)
 *   head      the tied Q8_0 head (K = 576, N = 49 152) as the importer stores it: two exact 4-bit planes
 *   dispatch  a chain of 1 000 tiny Adds ([1, 1, 576]): ORT's cost per node, 1 thread vs 2 (spinning on, off)
 *
 *   npm run bench:nbits-ops -- [--threads 2] [--runs 400] [--parts one,fusion,head,dispatch] [--rows 1,8]
 */
import { parseArgs } from 'node:util';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { FLOAT, encodeModel, node, onnx, tensorValueInfo } from '../src/runtime/graph/onnx.ts';
import { packNBits, unpackNBits } from '../src/import/quant/nbits-pack.ts';
import { MS_DOMAIN, NBitsEmitter, type AccuracyLevel } from '../src/import/quant/nbits-nodes.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '400' },
    parts: { type: 'string', default: 'one' },
    rows: { type: 'string', default: '1,8' },
  },
});
const parts = new Set(args.parts.split(','));
const K = 576;
const N = 1536;
const threads = Number(args.threads);
const runs = Number(args.runs);

// Random but valid Q4_1 blocks: f16 d ≈ 0.01, f16 m ≈ −0.08, random nibbles.
const raw = new Uint8Array((K / 32) * 20 * N);
let seed = 1;
const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
for (let b = 0; b < raw.length / 20; b++) {
  raw.set([0x1f, 0x21], b * 20); // d = 0.0101
  raw.set([0x1f, 0xad], b * 20 + 2); // m = −0.0808
  for (let j = 0; j < 16; j++) raw[b * 20 + 4 + j] = Math.floor(next() * 256);
}
const w = packNBits('Q4_1', raw, K, N, 4);
const dense = unpackNBits(w);
const UINT8 = onnx.TensorProto.DataType.UINT8;
const f = (name: string, dims: number[], data: Float32Array) => ({ name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer.slice(0)) });

function model(kind: 'sym+corr' | 'float zp' | 'f32', level: AccuracyLevel): Uint8Array {
  let nodes;
  let inits;
  if (kind === 'sym+corr') {
    const e = new NBitsEmitter();
    e.linear({ scope: '/l', prefix: 'l', input: 'x', output: 'y', weight: w, accuracyLevel: level });
    nodes = e.nodes;
    inits = e.initializers;
  } else if (kind === 'float zp') {
    const nb = K / 32;
    const zp = new Float32Array(N * nb);
    for (let n = 0; n < N; n++) for (let b = 0; b < nb; b++) zp[n * nb + b] = 8 - w.offsets![b * N + n]! / w.scales[n * nb + b]!;
    const m = node('MatMulNBits', '/l/MatMulNBits', ['x', 'B', 's', 'zp'], ['y'], [
      { name: 'K', type: 2, i: K }, { name: 'N', type: 2, i: N }, { name: 'bits', type: 2, i: 4 },
      { name: 'block_size', type: 2, i: 32 }, { name: 'accuracy_level', type: 2, i: level },
    ]);
    m.domain = MS_DOMAIN;
    nodes = [m];
    inits = [{ name: 'B', dataType: UINT8, dims: [N, nb, 16], rawData: w.data }, f('s', [N * nb], w.scales), f('zp', [N * nb], zp)];
  } else {
    const t = new Float32Array(K * N);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = dense[n * K + k]!;
    nodes = [node('MatMul', '/l/MatMul', ['x', 'W'], ['y'])];
    inits = [f('W', [K, N], t)];
  }
  const graph = { name: 'op', input: [tensorValueInfo('x', FLOAT, [1, 1, K])], output: [tensorValueInfo('y', FLOAT, [1, 1, N])], node: nodes, initializer: inits };
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }], graph }));
}

const opts = { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1 } as const;
if (parts.has('one')) await onePart();
if (parts.has('fusion') || parts.has('head') || parts.has('dispatch')) {
  const { shapeParts } = await import('./lib/nbits-shapes.ts');
  await shapeParts({ parts, rows: args.rows.split(',').map(Number), threads, runs });
}

async function onePart(): Promise<void> {
  const variants: [string, InferenceSession][] = [];
  for (const level of [0, 4] as const) for (const kind of ['sym+corr', 'float zp'] as const) variants.push([`${kind}, accuracy_level ${level}`, await InferenceSession.create(model(kind, level), opts)]);
  variants.push(['f32 MatMul', await InferenceSession.create(model('f32', 0), opts)]);
  const x = new Tensor('float32', Float32Array.from({ length: K }, () => next() - 0.5), [1, 1, K]);
  const ref = (await variants.at(-1)![1].run({ x })).y!.data as Float32Array;
  const times = variants.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    for (let v = 0; v < variants.length; v++) {
      const t = performance.now();
      await variants[v]![1].run({ x });
      times[v]!.push((performance.now() - t) * 1000);
    }
  }
  const w2 = [34, 12, 16];
  console.log(`\nbench/nbits-ops — Q4_1 layer K=${K} N=${N}, 1 token, ${threads} threads, median of ${runs} interleaved runs`);
  console.log(row(['variant', 'µs/run', 'max |y − y_f32|'], w2));
  for (let v = 0; v < variants.length; v++) {
    const y = (await variants[v]![1].run({ x })).y!.data as Float32Array;
    let d = 0;
    for (let i = 0; i < N; i++) d = Math.max(d, Math.abs(y[i]! - ref[i]!));
    console.log(row([variants[v]![0], median(times[v]!), d], w2));
  }
}
