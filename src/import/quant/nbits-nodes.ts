/**
 * ONNX nodes for GGUF-quantized layers: a linear layer as `com.microsoft.MatMulNBits` (+ an offset
 * correction for Q4_1/Q5_1/Q4_K), and a quantized embedding as `com.microsoft.GatherBlockQuantized` that
 * shares its bytes with the tied output head.
 *
 * Linear layer, x [b, s, K] → y [b, s, N] (nbits-pack.ts: w[n,k] = scale[n,b]·(u − zp) + offset[b,n]):
 *
 *     y0  = MatMulNBits(x, B, scales)                      Σ_k x[k]·scale·(u − zp)        [b, s, N]
 *     xs  = FusedMatMul(x, E [K, K/sub]), E 0/1 per block   blocksum(x)                    [b, s, K/sub]
 *     y   = y0 + FusedMatMul(xs, offsets [K/sub, N])        + Σ_b blocksum_b(x)·offset[b,n]
 *
 * Why not MatMulNBits' own float zero points (exact too, zp = −offset/scale): ORT 1.30's CPU kernel takes a
 * slow path with them (bench/nbits-ops.ts). The products are FusedMatMul (see msNode), not MatMul: the graph
 * rewrite treats a MatMul with a 2-D weight initializer as a linear layer, and this correction must not
 * get an adapter branch. The blocksum of an input is computed once and shared by every layer reading it
 * (q/k/v, gate/up).
 *
 * `accuracy_level` is MatMulNBits' compute precision: 0 = float32 activations (dequantize, then an f32
 * GEMM), 4 = int8 activations quantized per block (MLAS integer kernels: faster, approximate).
 */
import { FLOAT, int64Initializer, node, onnx, type NodeProto, type TensorProto } from '../../runtime/graph/onnx.ts';
import type { NBitsWeight } from './nbits-pack.ts';

export const MS_DOMAIN = 'com.microsoft';
const UINT8 = onnx.TensorProto.DataType.UINT8;
const INT = 2; // AttributeProto.INT

export type AccuracyLevel = 0 | 1 | 2 | 3 | 4;

export interface NBitsLinearSpec {
  /** ONNX node-name scope: `/model/layers.0/self_attn/q_proj` (module path with '/'), so the rewrite maps it. */
  scope: string;
  /** Initializer name prefix, e.g. `model.layers.0.self_attn.q_proj`. */
  prefix: string;
  input: string;
  output: string;
  weight: NBitsWeight;
  /**
   * A second 4-bit plane added to `weight` (an 8-bit weight split by splitTo4Bit: weight = hi, lo = lo). Its
   * node is named `${scope}/nbits_lo/MatMulNBits`: a helper, not a layer (linear-layers.ts skips `/nbits_`).
   */
  lo?: NBitsWeight;
  accuracyLevel: AccuracyLevel;
  /**
   * Reuse B and scales already emitted (tied embedding / head): names of existing initializers, one pair per
   * plane. When set, no weight initializers are added for this layer.
   */
  shared?: SharedPlanes;
}

export interface PlaneNames {
  data: string;
  scales: string;
}
export type SharedPlanes = PlaneNames[];

/**
 * Appends nodes and initializers to one graph (`sink`: e.g. the importer's GraphBuilder, whose arrays are
 * public); shares blocksums between layers with the same input.
 */
export class NBitsEmitter {
  private readonly blocksums = new Map<string, string>();
  /** Shared constant initializers already stored (blocksum indicators, all-zero zero points). */
  private readonly indicators = new Set<string>();

  constructor(private readonly sink: { nodes: NodeProto[]; initializers: TensorProto[] } = { nodes: [], initializers: [] }) {}

  get nodes(): NodeProto[] {
    return this.sink.nodes;
  }

  get initializers(): TensorProto[] {
    return this.sink.initializers;
  }

  linear(spec: NBitsLinearSpec): void {
    const { scope, prefix } = spec;
    const planes = spec.lo ? [spec.weight, spec.lo] : [spec.weight];
    const last = planes[planes.length - 1]!;
    // An offset that is exactly 8·scale is a zero point of 0 (see zeroPointZero): no correction needed.
    const unsignedLast = last.offsets !== undefined && offsetIsZeroPoint0(last);
    const offsets = unsignedLast ? undefined : last.offsets;
    const names = planes.map((w, i) => spec.shared?.[i] ?? this.storePlane(w, `${prefix}.nbits${i === 0 ? '' : '_lo'}`));
    const outs = planes.map((_, i) => (i === 0 && planes.length === 1 && !offsets ? spec.output : `${spec.output}/nbits${i === 0 ? '' : '_lo'}`));
    planes.forEach((w, i) => {
      const inputs = [spec.input, names[i]!.data, names[i]!.scales];
      if (unsignedLast && w === last) inputs.push(this.zeroPointZero(w));
      const mm = node('MatMulNBits', `${scope}${i === 0 ? '' : '/nbits_lo'}/MatMulNBits`, inputs, [outs[i]!], [
        { name: 'K', type: INT, i: w.K },
        { name: 'N', type: INT, i: w.N },
        { name: 'bits', type: INT, i: w.bits },
        { name: 'block_size', type: INT, i: w.blockSize },
        { name: 'accuracy_level', type: INT, i: spec.accuracyLevel },
      ]);
      mm.domain = MS_DOMAIN;
      this.nodes.push(mm);
    });
    let sum = outs[0]!;
    if (planes.length === 2) {
      sum = offsets ? `${spec.output}/nbits_planes` : spec.output;
      this.nodes.push(node('Add', `${scope}/nbits_lo/Add`, [outs[0]!, outs[1]!], [sum]));
    }
    if (!offsets) return;
    const nb = last.K / last.blockSize;
    const xs = this.blocksum(spec.input, last.K, last.blockSize, scope);
    const off = `${prefix}.nbits.offsets`;
    this.initializers.push(floatInit(off, [nb, last.N], offsets));
    this.nodes.push(
      msNode('FusedMatMul', `${scope}/nbits_offset/FusedMatMul`, [xs, off], [`${spec.output}/nbits_offset`]),
      node('Add', `${scope}/nbits_offset/Add`, [sum, `${spec.output}/nbits_offset`], [spec.output]),
    );
  }

  /**
   * MatMulNBits' zero_points input, all 0, for a 4-bit plane whose offsets are exactly 8·scale: w = s·(u − 8) + 8s
   * = s·(u − 0), i.e. an unsigned plane (the low half of a split 8-bit weight without offsets, e.g. Q8_0's). ORT's
   * kernel takes uint8 zero points on its fast path (only float zero points are slow, bench/nbits-ops.ts), so
   * this replaces the blocksum correction (for SmolLM2's tied head: a 3.5 MB offset table read per token, a
   * MatMul and an Add) by a 0.4 MB input. Packed like the data: [N, ⌈nb/2⌉] bytes, two 4-bit zero points each;
   * one initializer per shape, shared.
   */
  private zeroPointZero(w: NBitsWeight): string {
    const nb = w.K / w.blockSize;
    const cols = Math.ceil((nb * w.bits) / 8);
    const name = `nbits.zero_points0.N${w.N}.cols${cols}`;
    if (!this.indicators.has(name)) {
      this.initializers.push({ name, dataType: UINT8, dims: [w.N, cols], rawData: new Uint8Array(w.N * cols) });
      this.indicators.add(name);
    }
    return name;
  }

  /**
   * Embedding lookup from the quantized table (ids [b, s] → [b, s, K]) with GatherBlockQuantized (default
   * zero point 2^(bits−1); 4-bit data packed two per byte, low nibble first — MatMulNBits' layout), one
   * lookup per plane, offsets gathered per block and added. Returns the planes' B/scales initializer names so
   * a tied head can share them.
   */
  embedding(opts: { scope: string; prefix: string; ids: string; output: string; weight: NBitsWeight; lo?: NBitsWeight }): SharedPlanes {
    const { scope, prefix } = opts;
    const planes = opts.lo ? [opts.weight, opts.lo] : [opts.weight];
    const last = planes[planes.length - 1]!;
    const nb = last.K / last.blockSize;
    const shared: SharedPlanes = [];
    const parts = planes.map((w, i) => {
      const tag = i === 0 ? '' : '_lo';
      const names = this.storePlane(w, `${prefix}.nbits${tag}`);
      shared.push(names);
      // GatherBlockQuantized wants scales with data's rank ([V, nb, 1]); MatMulNBits wants them flat ([V·nb]):
      // ORT accepts neither shape for the other op, so the (small) scales are stored twice.
      const scales3 = `${prefix}.nbits${tag}.scales_gather`;
      this.initializers.push(floatInit(scales3, [w.N, nb, 1], w.scales));
      const out = `${opts.output}/blocks${tag}`;
      const g = node('GatherBlockQuantized', `${scope}/nbits${tag}/GatherBlockQuantized`, [names.data, opts.ids, scales3], [out], [
        { name: 'gather_axis', type: INT, i: 0 },
        { name: 'quantize_axis', type: INT, i: 2 },
        { name: 'block_size', type: INT, i: w.blockSize },
        { name: 'bits', type: INT, i: w.bits },
      ]);
      g.domain = MS_DOMAIN;
      this.nodes.push(g);
      return out;
    });
    let full = parts[0]!;
    if (parts.length === 2) {
      full = `${opts.output}/blocks_sum`;
      this.nodes.push(node('Add', `${scope}/nbits_lo/Add`, [parts[0]!, parts[1]!], [full]));
    }
    if (last.offsets) {
      // offsets are stored [nb, V] for the head's correction; the lookup needs rows: [V, nb, 1].
      const offRows = `${prefix}.nbits.offsets_gather`;
      const t = new Float32Array(last.N * nb);
      for (let b = 0; b < nb; b++) for (let n = 0; n < last.N; n++) t[n * nb + b] = last.offsets[b * last.N + n]!;
      this.initializers.push(floatInit(offRows, [last.N, nb, 1], t));
      this.nodes.push(
        node('Gather', `${scope}/nbits_offset/Gather`, [offRows, opts.ids], [`${opts.output}/offsets`], [{ name: 'axis', type: INT, i: 0 }]),
        node('Add', `${scope}/nbits_offset/Add`, [full, `${opts.output}/offsets`], [`${opts.output}/blocks_off`]),
      );
      full = `${opts.output}/blocks_off`;
    }
    const shape = `${prefix}.nbits.embed_shape`;
    this.initializers.push(int64Initializer(shape, [0, 0, last.K]));
    this.nodes.push(node('Reshape', `${scope}/nbits/Reshape`, [full, shape], [opts.output]));
    return shared;
  }

  private storePlane(w: NBitsWeight, name: string): PlaneNames {
    const nb = w.K / w.blockSize;
    const data = `${name}.B`;
    const scales = `${name}.scales`;
    this.initializers.push(
      { name: data, dataType: UINT8, dims: [w.N, nb, (w.blockSize * w.bits) / 8], rawData: w.data },
      floatInit(scales, [w.N * nb], w.scales),
    );
    return { data, scales };
  }

  /**
   * blocksum(x) [b, s, K/sub] as one product with a 0/1 indicator E [K, K/sub] (E[k, j] = 1 iff k lies in block j),
   * not Reshape + ReduceSum: one kernel dispatch instead of two per shared input (every product is x·1 or x·0, so
   * only the summation order differs). One E per (K, sub), shared by every layer (cache-resident).
   */
  private blocksum(input: string, K: number, sub: number, scope: string): string {
    const key = `${input}|${sub}`;
    const have = this.blocksums.get(key);
    if (have) return have;
    const out = `${input}/blocksum${sub}`;
    this.nodes.push(msNode('FusedMatMul', `${scope}/nbits_blocksum/FusedMatMul`, [input, this.blockIndicator(K, sub)], [out]));
    this.blocksums.set(key, out);
    return out;
  }

  private blockIndicator(K: number, sub: number): string {
    const name = `nbits.blocksum.K${K}.block${sub}`;
    if (!this.indicators.has(name)) {
      const nb = K / sub;
      const e = new Float32Array(K * nb);
      for (let k = 0; k < K; k++) e[k * nb + Math.floor(k / sub)] = 1;
      this.initializers.push(floatInit(name, [K, nb], e));
      this.indicators.add(name);
    }
    return name;
  }
}

/** offsets[b, n] = 8·scales[n, b] for every block: exact in f32 (a power-of-two multiple), so compared exactly. */
function offsetIsZeroPoint0(w: NBitsWeight): boolean {
  if (w.bits !== 4 || !w.offsets) return false;
  const nb = w.K / w.blockSize;
  for (let n = 0; n < w.N; n++) for (let b = 0; b < nb; b++) if (w.offsets[b * w.N + n] !== 8 * w.scales[n * nb + b]!) return false;
  return true;
}

/**
 * A `com.microsoft` node. The correction products use FusedMatMul (alpha 1: a plain MatMul) with 2-D constant
 * operands (the tables used to be 3-D [1, K, N]): ORT's CPU MatMul pre-packs a constant B when it is 2-D and
 * then multiplies x [b, s, K] as one [b·s, K] matrix; and FusedMatMul is not an op the graph rewrite takes for a linear layer
 * (runtime/graph/linear-layers.ts: MatMul, Gemm, MatMulNBits), so no adapter branch lands on a correction.
 */
function msNode(opType: string, name: string, inputs: string[], outputs: string[]): NodeProto {
  const n = node(opType, name, inputs, outputs);
  n.domain = MS_DOMAIN;
  return n;
}

function floatInit(name: string, dims: number[], data: Float32Array): TensorProto {
  // rawData (little-endian bytes) instead of floatData: no per-element boxing for 49k × 18 scales.
  return { name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
