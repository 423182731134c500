/**
 * Experiment for bench/s2ft-gather (not used by the server): two ways to run an S²FT delta on one
 * linear layer y = x·W + bias (x [batch, seq, d_in], W [d_in, d_out]), per batch row i.
 *
 * PyTorch-layout ΔW [d_out, d_in]; S²FT module (s2ft-format.ts) with k channels `idx`:
 *   output side  ΔW[idx, :] = S, S [k, d_in]:    y[..., idx] += x·Sᵀ
 *   input side   ΔW[:, idx] = S, S [d_out, k]:   y += x[..., idx]·Sᵀ
 *
 * (a) selection — what Patchbay does now: the graph from `addDeltaBranches`, y' = y + (x·A)·B with
 *     A [batch, d_in, K], B [batch, K, d_out] from `compileS2ft` (one factor a dense one-hot) and packed by
 *     `deltaTensors`. Per layer: MatMul, MatMul, Add.
 * (b) gather/scatter: inputs s2ft.<m>.s and s2ft.<m>.idx int32 [batch, 1, K];
 *     output side  s = Sᵀ [batch, d_in, K]:   d = x·s [b, s, K];  y' = ScatterElements(y, idx↑, d, axis −1, add)
 *     input side   s = Sᵀ [batch, K, d_out]:  g = GatherElements(x, idx↑, axis −1) [b, s, K];  y' = y + g·s
 *     where idx↑ = Expand(idx, [b, seq, 1]) broadcasts idx over seq. Per layer: Expand, MatMul, Scatter
 *     (output) or Expand, Gather, MatMul, Add (input); [b, seq, 1] = Concat(Shape(x)[0:2], [1]) is two
 *     nodes shared by every layer of a graph.
 * K = max k over the batch; shorter rows and rows without an adapter pad S with zeros and idx with 0, so
 * padding adds exact zeros (the scatter adds 0 to column 0; the gather reads column 0 and multiplies by 0).
 */
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, type DeltaLayer } from '../../src/runtime/graph/index.ts';
import { FLOAT, encodeModel, int64Initializer, node, onnx, tensorValueInfo, type NodeProto, type TensorProto } from '../../src/runtime/graph/onnx.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { compileS2ft } from '../../src/adapters/s2ft.ts';
import type { S2ftAxis } from '../../src/adapters/s2ft-format.ts';

const INT32 = onnx.TensorProto.DataType.INT32;
const INT = 2;
const STRING = 3;

/** Realistic tiny-gpt2 modules for each side. */
export const MODULE: Record<S2ftAxis, string> = { output: 'transformer.h.0.mlp.c_fc', input: 'transformer.h.0.attn.c_proj' };

export interface Linear {
  axis: S2ftAxis;
  dIn: number;
  dOut: number;
  /** Row-major [d_in, d_out] (GPT-2 Conv1D layout, y = x·W). */
  w: Float32Array;
  bias: Float32Array;
}

/** One row's S²FT module in Patchbay's file layout (S [k, d_in] output side, [d_out, k] input side). */
export interface S2ftRow {
  idx: Int32Array;
  S: Float32Array;
}

export type Variant = 'base' | 'selection' | 'gather';

/** y = x·W + bias with an Optimum-style node name, optionally with the gather/scatter branch. */
export function linearModel(l: Linear, variant: Variant): Uint8Array {
  const name = MODULE[l.axis];
  const scope = l.axis === 'output' ? '/transformer/h.0/mlp/c_fc' : '/transformer/h.0/attn/c_proj';
  const yOut = variant === 'gather' ? 'y/pre_delta' : 'y';
  const inputs = [tensorValueInfo('x', FLOAT, ['batch_size', 'seq', l.dIn])];
  const nodes: NodeProto[] = [
    node('MatMul', `${scope}/MatMul`, ['x', 'W'], ['xw']),
    node('Add', `${scope}/Add`, ['xw', 'bias'], [yOut]),
  ];
  const inits: TensorProto[] = [
    { name: 'W', dataType: FLOAT, dims: [l.dIn, l.dOut], rawData: bytesOf(l.w) },
    { name: 'bias', dataType: FLOAT, dims: [l.dOut], rawData: bytesOf(l.bias) },
  ];
  if (variant === 'gather') {
    const { s, idx } = gatherInputNames(name);
    const p = `/s2ft/${name}`;
    inputs.push(
      tensorValueInfo(s, FLOAT, l.axis === 'output' ? ['batch_size', l.dIn, 'K'] : ['batch_size', 'K', l.dOut]),
      tensorValueInfo(idx, INT32, ['batch_size', 1, 'K']),
    );
    inits.push(int64Initializer('/s2ft/one', [1]));
    nodes.push(
      // shared by all layers of a graph: [batch, seq, 1]
      node('Shape', '/s2ft/bs', ['x'], ['/s2ft/bs_out'], [{ name: 'start', type: INT, i: 0 }, { name: 'end', type: INT, i: 2 }]),
      node('Concat', '/s2ft/bs1', ['/s2ft/bs_out', '/s2ft/one'], ['/s2ft/bs1_out'], [{ name: 'axis', type: INT, i: 0 }]),
      node('Expand', `${p}/idx`, [idx, '/s2ft/bs1_out'], [`${p}/idx_out`]),
      ...(l.axis === 'output'
        ? [
            node('MatMul', `${p}/d`, ['x', s], [`${p}/d_out`]),
            node('ScatterElements', `${p}/scatter`, [yOut, `${p}/idx_out`, `${p}/d_out`], ['y'], [
              { name: 'axis', type: INT, i: -1 },
              { name: 'reduction', type: STRING, s: new TextEncoder().encode('add') },
            ]),
          ]
        : [
            node('GatherElements', `${p}/gather`, ['x', `${p}/idx_out`], [`${p}/g_out`], [{ name: 'axis', type: INT, i: -1 }]),
            node('MatMul', `${p}/d`, [`${p}/g_out`, s], [`${p}/d_out`]),
            node('Add', `${p}/add`, [yOut, `${p}/d_out`], ['y']),
          ]),
    );
  }
  const graph = { name: 's2ft-linear', input: inputs, output: [tensorValueInfo('y', FLOAT, ['batch_size', 'seq', l.dOut])], initializer: inits, node: nodes };
  const bytes = encodeModel(onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph }));
  return variant === 'selection' ? addDeltaBranches(bytes, (m) => m.name === name).bytes : bytes;
}

export function gatherInputNames(module: string): { s: string; idx: string } {
  return { s: `s2ft.${module}.s`, idx: `s2ft.${module}.idx` };
}

/** The graph's selection-path layer (input names as `addDeltaBranches` makes them). */
export function selectionLayer(l: Linear): DeltaLayer {
  const name = MODULE[l.axis];
  return { name, dIn: l.dIn, dOut: l.dOut, aInput: `delta.${name}.a`, bInput: `delta.${name}.b` };
}

/** What an adapter holds after load for each representation (both O(k·d), neither is timed per batch). */
export function compileSelection(l: Linear, row: S2ftRow) {
  return compileS2ft(l.axis, row.idx, row.S, l.dIn, l.dOut);
}

export interface GatherFactors {
  k: number;
  /** Sᵀ: [d_in, k] (output side) or [k, d_out] (input side), row-major. */
  s: Float32Array;
  idx: Int32Array;
}

export function compileGather(l: Linear, row: S2ftRow): GatherFactors {
  const k = row.idx.length;
  const rows = l.axis === 'output' ? k : l.dOut;
  const cols = l.axis === 'output' ? l.dIn : k;
  const s = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) s[c * rows + r] = row.S[r * cols + c]!;
  return { k, s, idx: row.idx };
}

/** Per batch change, selection: Patchbay's own packer over the compiled (one-hot) factors. */
export function selectionFeeds(l: Linear, rows: readonly (ReturnType<typeof compileSelection> | undefined)[]): Record<string, ort.Tensor> {
  return deltaTensors([selectionLayer(l)], rows.map((f, i) => (f ? { key: `r${i}`, layers: new Map([[MODULE[l.axis], f]]) } : undefined)));
}

/** Per batch change, gather: S padded to K, idx padded with 0 (module doc). */
export function gatherFeeds(l: Linear, rows: readonly (GatherFactors | undefined)[]): Record<string, ort.Tensor> {
  const n = rows.length;
  let K = 0;
  for (const r of rows) K = Math.max(K, r?.k ?? 0);
  const s = new Float32Array(n * K * (l.axis === 'output' ? l.dIn : l.dOut));
  const idx = new Int32Array(n * K);
  rows.forEach((r, i) => {
    if (!r || r.k === 0) return;
    idx.set(r.idx, i * K);
    if (l.axis === 'input' || r.k === K) s.set(r.s, i * s.length / n);
    else for (let c = 0; c < l.dIn; c++) s.set(r.s.subarray(c * r.k, (c + 1) * r.k), (i * l.dIn + c) * K);
  });
  const names = gatherInputNames(MODULE[l.axis]);
  return {
    [names.s]: new ort.Tensor('float32', s, l.axis === 'output' ? [n, l.dIn, K] : [n, K, l.dOut]),
    [names.idx]: new ort.Tensor('int32', idx, [n, 1, K]),
  };
}

/** Dense reference in float64: y'[b] = x[b]·W + bias + x[b]·ΔW_bᵀ with ΔW_b [d_out, d_in] built explicitly. */
export function denseReference(l: Linear, x: Float32Array, batch: number, seq: number, rows: readonly (S2ftRow | undefined)[]): Float64Array {
  const y = new Float64Array(batch * seq * l.dOut);
  for (let b = 0; b < batch; b++) {
    const dw = new Float64Array(l.dOut * l.dIn);
    const row = rows[b];
    if (row) {
      const k = row.idx.length;
      for (let j = 0; j < k; j++) {
        const ch = row.idx[j]!;
        if (l.axis === 'output') for (let c = 0; c < l.dIn; c++) dw[ch * l.dIn + c] = row.S[j * l.dIn + c]!;
        else for (let o = 0; o < l.dOut; o++) dw[o * l.dIn + ch] = row.S[o * k + j]!;
      }
    }
    for (let t = 0; t < seq; t++) {
      const xr = x.subarray((b * seq + t) * l.dIn, (b * seq + t + 1) * l.dIn);
      for (let o = 0; o < l.dOut; o++) {
        let acc = l.bias[o]!;
        for (let c = 0; c < l.dIn; c++) acc += xr[c]! * (l.w[c * l.dOut + o]! + dw[o * l.dIn + c]!);
        y[(b * seq + t) * l.dOut + o] = acc;
      }
    }
  }
  return y;
}

/** Deterministic uniform(−scale/2, scale/2) and distinct random channel ids. */
export function rng(seed: number): (scale?: number) => number {
  let s = seed >>> 0;
  return (scale = 1) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale;
  };
}

export function randomLinear(axis: S2ftAxis, dIn: number, dOut: number, seed = 1): Linear {
  const r = rng(seed);
  return { axis, dIn, dOut, w: Float32Array.from({ length: dIn * dOut }, () => r(0.1)), bias: Float32Array.from({ length: dOut }, () => r(0.1)) };
}

export function randomS2ft(l: Linear, k: number, seed: number): S2ftRow {
  const r = rng(seed);
  const size = l.axis === 'output' ? l.dOut : l.dIn;
  const ids = Array.from({ length: size }, (_, i) => i);
  for (let i = size - 1; i > 0; i--) {
    const j = Math.floor((r() + 0.5) * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return { idx: Int32Array.from(ids.slice(0, k)), S: Float32Array.from({ length: k * (l.axis === 'output' ? l.dIn : l.dOut) }, () => r(0.1)) };
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
