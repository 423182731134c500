/**
 * bench/s2ft-gather — issue 3's "S²FT rides the delta path exactly (selection matrix or gather —
 * measure which is faster)", on one linear layer of tiny-gpt2 shape (graphs and formulas:
 * bench/lib/s2ft-gather.ts):
 *
 *   output side (mlp.c_fc, 256→1024):   y[..., idx] += x·Sᵀ
 *       selection  y + (x·Sᵀ)·E            E one-hot [K, d_out]      MatMul, MatMul, Add
 *       gather     ScatterElements(y, idx, x·Sᵀ, add)                 Expand, MatMul, ScatterElements
 *   input side (attn.c_proj, 256→256):  y += x[..., idx]·Sᵀ
 *       selection  y + (x·E)·Sᵀ            E one-hot [d_in, K]       MatMul, MatMul, Add
 *       gather     y + GatherElements(x, idx)·Sᵀ                      Expand, GatherElements, MatMul, Add
 *   (+ Shape, Concat for [batch, seq, 1], shared by all layers in a real graph, counted here)
 *
 * Every row of the batch has its own adapter (k channels, distinct idx); k = 0 is a batch with no S²FT
 * row, i.e. what the branch costs every step when idle. Scenarios: decode (seq 1) at batch 1 and 8,
 * prefill (seq 64) at batch 1. One ORT thread, graphOptimizationLevel 'all' (as src/runtime/session.ts).
 * Each round runs every cell of a (side, scenario) group for ~`ms` ms, order rotated between rounds; the
 * table shows the median per-run time, the branch cost over the plain layer (Δ), and gather/selection.
 * Then the host-side packing per batch change: Patchbay's `deltaTensors` over compiled one-hot factors
 * vs packing S + idx. Writes bench/out/s2ft-gather.json.
 *
 *   npx tsx bench/s2ft-gather.ts [--rounds 40] [--ms 4]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { median, row } from './lib/stats.ts';
import {
  compileGather,
  compileSelection,
  gatherFeeds,
  linearModel,
  randomLinear,
  randomS2ft,
  selectionFeeds,
  type Linear,
  type Variant,
} from './lib/s2ft-gather.ts';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '40' }, ms: { type: 'string', default: '4' } } });
const ROUNDS = Number(args.rounds);
const KS = [0, 32, 80, 128];
const SCENARIOS = [
  { name: 'decode b=1', batch: 1, seq: 1 },
  { name: 'decode b=8', batch: 8, seq: 1 },
  { name: 'prefill b=1 s=64', batch: 1, seq: 64 },
];
const LAYERS = [randomLinear('output', 256, 1024, 1), randomLinear('input', 256, 256, 2)];
const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' };

/** Rows 0..batch-1 each with a different adapter of k channels (none when k = 0). */
const adapters = (l: Linear, batch: number, k: number) => Array.from({ length: batch }, (_, i) => (k ? randomS2ft(l, k, 100 + i) : undefined));

interface Cell {
  side: string; scenario: string; k: number; variant: Variant;
  session: ort.InferenceSession; feeds: Record<string, ort.Tensor>; runs: number; us: number[];
}
const cells: Cell[] = [];
for (const l of LAYERS) {
  const sessions = Object.fromEntries(
    await Promise.all((['base', 'selection', 'gather'] as const).map(async (v) => [v, await ort.InferenceSession.create(linearModel(l, v), opts)] as const)),
  ) as Record<Variant, ort.InferenceSession>;
  for (const sc of SCENARIOS) {
    const x = { x: new ort.Tensor('float32', Float32Array.from({ length: sc.batch * sc.seq * l.dIn }, (_, i) => Math.sin(i)), [sc.batch, sc.seq, l.dIn]) };
    const side = `${l.axis} ${l.dIn}→${l.dOut}`;
    const add = (k: number, variant: Variant, feeds: Record<string, ort.Tensor>) =>
      cells.push({ side, scenario: sc.name, k, variant, session: sessions[variant], feeds: { ...x, ...feeds }, runs: 0, us: [] });
    add(0, 'base', {});
    for (const k of KS) {
      const rows = adapters(l, sc.batch, k);
      add(k, 'selection', selectionFeeds(l, rows.map((r) => r && compileSelection(l, r))));
      add(k, 'gather', gatherFeeds(l, rows.map((r) => r && compileGather(l, r))));
    }
  }
}

/** Per-run times (µs), so the median shrugs off bursts of other load on shared cores. */
async function trial(c: Cell, runs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await c.session.run(c.feeds);
    out.push((performance.now() - t0) * 1000);
  }
  return out;
}
for (const c of cells) c.runs = Math.max(3, Math.round((Number(args.ms) * 1000) / median(await trial(c, 20))));
// A group's cells (same side and scenario) run back to back, order rotated each round, so the variants
// being compared see the same machine.
const groups = new Map<string, Cell[]>();
for (const c of cells) groups.set(`${c.side} ${c.scenario}`, [...(groups.get(`${c.side} ${c.scenario}`) ?? []), c]);
for (const group of groups.values()) {
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < group.length; j++) {
      const c = group[(j + round) % group.length]!;
      c.us.push(...(await trial(c, c.runs)));
    }
  }
}

const us = (side: string, scenario: string, k: number, v: Variant) =>
  median(cells.find((c) => c.side === side && c.scenario === scenario && c.variant === v && (v === 'base' || c.k === k))!.us);
const W = [22, 18, 4, 8, 8, 8, 9, 9, 8, 8];
console.log(`one linear layer, ORT ${ort.env.versions.common}, 1 thread; µs per session.run, median of all runs over ${ROUNDS} interleaved rounds`);
console.log(row(['side', 'scenario', 'k', 'base', 'select', 'gather', 'Δselect', 'Δgather', 'g/s', 'Δg/Δs'], W));
const timing: object[] = [];
for (const l of LAYERS) {
  const side = `${l.axis} ${l.dIn}→${l.dOut}`;
  for (const sc of SCENARIOS) {
    for (const k of KS) {
      const [b, s, g] = (['base', 'selection', 'gather'] as const).map((v) => us(side, sc.name, k, v)) as [number, number, number];
      timing.push({ side, scenario: sc.name, k, baseUs: b, selectionUs: s, gatherUs: g });
      console.log(row([side, sc.name, k, b.toFixed(1), s.toFixed(1), g.toFixed(1), (s - b).toFixed(1), (g - b).toFixed(1), (g / s).toFixed(3), ((g - b) / (s - b)).toFixed(2)], W));
    }
  }
}

// Host-side packing per batch change (factors compiled at adapter load, not timed).
console.log('\nhost packing per batch change, one layer, every row a different adapter (µs, median; KiB fed)');
const PW = [22, 6, 4, 10, 10, 7, 11, 11];
console.log(row(['side', 'batch', 'k', 'select', 'gather', 'g/s', 'select KiB', 'gather KiB'], PW));
const packing: object[] = [];
for (const l of LAYERS) {
  for (const batch of [1, 8]) {
    for (const k of KS.filter((k) => k > 0)) {
      const rows = adapters(l, batch, k);
      const sel = rows.map((r) => compileSelection(l, r!));
      const gat = rows.map((r) => compileGather(l, r!));
      const t = { s: [] as number[], g: [] as number[] };
      for (let i = 0; i < 30; i++) {
        for (const [key, f] of [['s', () => selectionFeeds(l, sel)], ['g', () => gatherFeeds(l, gat)]] as const) {
          const t0 = performance.now();
          for (let j = 0; j < 10; j++) f();
          t[key].push((performance.now() - t0) * 100);
        }
      }
      const kib = (feeds: Record<string, ort.Tensor>) => Object.values(feeds).reduce((n, x) => n + (x.data as Float32Array).byteLength, 0) / 1024;
      const [s, g] = [median(t.s), median(t.g)];
      const [sk, gk] = [kib(selectionFeeds(l, sel)), kib(gatherFeeds(l, gat))];
      packing.push({ side: `${l.axis} ${l.dIn}→${l.dOut}`, batch, k, selectionUs: s, gatherUs: g, selectionKiB: sk, gatherKiB: gk });
      console.log(row([`${l.axis} ${l.dIn}→${l.dOut}`, batch, k, s.toFixed(1), g.toFixed(1), (g / s).toFixed(2), sk.toFixed(0), gk.toFixed(0)], PW));
    }
  }
}

await mkdir('bench/out', { recursive: true });
await writeFile('bench/out/s2ft-gather.json', JSON.stringify({ args, ort: ort.env.versions.common, timing, packing }, null, 2));
for (const s of new Set(cells.map((c) => c.session))) await s.release();
