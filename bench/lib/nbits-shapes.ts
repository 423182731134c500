/**
 * bench:nbits-ops' shape parts (issue #6's race, BENCHMARKS.md): what fusing SmolLM2's q/k/v and gate/up
 * MatMulNBits layers would save, what the two-plane Q8_0 head costs, and ORT's dispatch cost per node. Every
 * variant is its own session; runs interleave; medians in µs.
 */
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { FLOAT, encodeModel, node, onnx, tensorValueInfo, type NodeProto, type TensorProto } from '../../src/runtime/graph/onnx.ts';
import { packNBits, splitTo4Bit, type NBitsWeight } from '../../src/import/quant/nbits-pack.ts';
import { MS_DOMAIN, NBitsEmitter, type AccuracyLevel } from '../../src/import/quant/nbits-nodes.ts';
import { median, row } from './stats.ts';

let seed = 7;
const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

/** Random Q4_1 blocks (f16 d ≈ 0.01, m ≈ −0.08) or Q8_0 blocks (f16 d ≈ 0.01, random int8), K × N. */
function weight(type: 'Q4_1' | 'Q8_0', K: number, N: number): NBitsWeight {
  const bytes = type === 'Q4_1' ? 20 : 34;
  const raw = new Uint8Array((K / 32) * bytes * N);
  for (let b = 0; b < raw.length / bytes; b++) {
    raw.set([0x1f, 0x21], b * bytes);
    if (type === 'Q4_1') raw.set([0x1f, 0xad], b * bytes + 2);
    for (let j = type === 'Q4_1' ? 4 : 2; j < bytes; j++) raw[b * bytes + j] = Math.floor(next() * 256);
  }
  return packNBits(type, raw, K, N, type === 'Q4_1' ? 4 : 8);
}

function graph(nodes: NodeProto[], inits: TensorProto[], K: number, rows: number, outs: [string, number][]): Uint8Array {
  const g = { name: 'shapes', input: [tensorValueInfo('x', FLOAT, [1, rows, K])], output: outs.map(([n, N]) => tensorValueInfo(n, FLOAT, [1, rows, N])), node: nodes, initializer: inits };
  return encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }], graph: g }));
}

/** Linear layers of one input x [1, rows, K] as the importer emits them (one NBitsEmitter: shared blocksums). */
function layers(specs: { N: number; w: NBitsWeight; lo?: NBitsWeight }[], K: number, rows: number, level: AccuracyLevel): Uint8Array {
  const e = new NBitsEmitter();
  specs.forEach((s, i) => e.linear({ scope: `/l${i}`, prefix: `l${i}`, input: 'x', output: `y${i}`, weight: s.w, ...(s.lo ? { lo: s.lo } : {}), accuracyLevel: level }));
  return graph(e.nodes, e.initializers, K, rows, specs.map((s, i) => [`y${i}`, s.N]));
}

async function race(title: string, variants: [string, Uint8Array, Record<string, unknown>?][], K: number, rows: number, runs: number, threads: number): Promise<void> {
  const sessions = await Promise.all(
    variants.map(([, bytes, extra]) => InferenceSession.create(bytes, { executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, ...extra })),
  );
  const x = new Tensor('float32', Float32Array.from({ length: rows * K }, () => next() - 0.5), [1, rows, K]);
  const times = variants.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) {
    for (const [i, s] of sessions.entries()) {
      const t = performance.now();
      await s.run({ x });
      times[i]!.push((performance.now() - t) * 1000);
    }
  }
  await Promise.all(sessions.map((s) => s.release()));
  console.log(`\n${title}`);
  for (const [i, [label]] of variants.entries()) console.log(row([label, median(times[i]!)], [52, 12]));
}

export async function shapeParts(o: { parts: Set<string>; rows: number[]; threads: number; runs: number }): Promise<void> {
  const K = 576;
  console.log(`\nbench/nbits-ops shape parts — ${o.threads} threads, median µs of ${o.runs} interleaved runs`);
  if (o.parts.has('fusion')) {
    const q = weight('Q4_1', K, 576), k = weight('Q4_1', K, 192), v = weight('Q4_1', K, 192);
    const qkv = weight('Q4_1', K, 960);
    const gate = weight('Q4_1', K, 1536), up = weight('Q4_1', K, 1536);
    const gateUp = weight('Q4_1', K, 3072);
    for (const rows of o.rows) {
      for (const level of [0, 4] as const) {
        await race(`fusion, ${rows} row(s), accuracy_level ${level}`, [
          ['q, k, v: 3 layers (shared blocksum)', layers([{ N: 576, w: q }, { N: 192, w: k }, { N: 192, w: v }], K, rows, level)],
          ['q|k|v: 1 layer, N = 960', layers([{ N: 960, w: qkv }], K, rows, level)],
          ['gate, up: 2 layers', layers([{ N: 1536, w: gate }, { N: 1536, w: up }], K, rows, level)],
          ['gate|up: 1 layer, N = 3072', layers([{ N: 3072, w: gateUp }], K, rows, level)],
        ], K, rows, o.runs, o.threads);
      }
    }
  }
  if (o.parts.has('head')) {
    const N = 49_152;
    const { hi, lo } = splitTo4Bit(weight('Q8_0', K, N));
    const q41 = weight('Q4_1', K, N);
    for (const rows of o.rows) {
      await race(`tied Q8_0 head K=${K} N=${N}, ${rows} row(s)`, [
        ['two 4-bit planes, level 0 (as imported, exact)', layers([{ N, w: hi, lo }], K, rows, 0)],
        ['two 4-bit planes, level 4', layers([{ N, w: hi, lo }], K, rows, 4)],
        ['one 4-bit plane + correction, level 0 (a Q4_1 head)', layers([{ N, w: q41 }], K, rows, 0)],
      ], K, rows, Math.max(20, Math.round(o.runs / 10)), o.threads);
    }
  }
  if (o.parts.has('dispatch')) {
    const n = 1000;
    const nodes = Array.from({ length: n }, (_, i) => node('Add', `a${i}`, [i === 0 ? 'x' : `y${i - 1}`, 'c'], [i === n - 1 ? 'y' : `y${i}`]));
    const c = { name: 'c', dataType: FLOAT, dims: [K], rawData: new Uint8Array(new Float32Array(K).fill(1e-3).buffer) };
    const bytes = graph(nodes, [c], K, 1, [['y', K]]);
    const noSpin = { extra: { session: { intra_op: { allow_spinning: '0' } } } };
    await race(`dispatch: ${n} Adds of [1, 1, ${K}] (÷ ${n} = µs per node)`, [
      ['1 thread', bytes, { intraOpNumThreads: 1 }],
      ['2 threads, spinning on', bytes, { intraOpNumThreads: 2 }],
      ['2 threads, spinning off', bytes, { intraOpNumThreads: 2, ...noSpin }],
    ], K, 1, o.runs, o.threads);
  }
}
