/**
 * Find the linear layers of an ONNX graph: the places where a weight delta can be attached.
 *
 * A linear layer is either
 *   - `y = MatMul(x, W)` with W a 2-D float initializer [d_in, d_out], optionally followed by
 *     `y = Add(y, bias)` (bias a 1-D initializer [d_out], either Add operand order); or
 *   - `y = Gemm(x, W, bias?)` with constant W, [d_in, d_out] or, with `transB = 1`, [d_out, d_in]
 *     (x is 2-D there: [batch·seq, d_in], or [d_in, batch·seq] with `transA = 1`); or
 *   - `y = com.microsoft.MatMulNBits(x, B, scales, …)` — a 4/8-bit quantized weight (GGUF q4 import, ORT's
 *     quantizer): d_in = attribute K, d_out = attribute N, optionally with its own bias input (index 5) or
 *     a following bias Add. The delta branch goes on y exactly as for MatMul: ΔW is added in float32 next
 *     to the quantized weight, never merged into it (QLoRA-style serving).
 * `outputTensor` is the tensor after the bias, i.e. the layer output as PyTorch sees it.
 *
 * Only these count: a MatMul whose second operand is not a 2-D float initializer (attention's Q·Kᵀ, the
 * per-block offset correction of the GGUF import, whose table is 3-D on purpose) is not a linear layer.
 */
import { FLOAT, intAttr, tensorDims, type ModelProto, type NodeProto, type TensorProto } from './onnx.ts';
import { modulePath } from './module-path.ts';

export interface LinearLayer {
  /** Hugging Face module path, e.g. `transformer.h.0.attn.c_attn`; unique within the graph. */
  name: string;
  op: 'MatMul' | 'Gemm' | 'MatMulNBits';
  nodeName: string;
  dIn: number;
  dOut: number;
  weightName: string;
  /** Bias initializer (the following Add's, or Gemm's C), if any. */
  biasName?: string;
  /** x: [batch, seq, d_in] for MatMul layers, 2-D for Gemm layers. */
  inputTensor: string;
  /** y after the bias. */
  outputTensor: string;
  /** Gemm with `transA = 1`: x arrives as [d_in, batch·seq]. */
  inputTransposed: boolean;
}

export function findLinearLayers(model: ModelProto): LinearLayer[] {
  const graph = model.graph;
  if (!graph) return [];
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t);
  const consumers = new Map<string, NodeProto[]>();
  for (const n of graph.node ?? []) {
    for (const i of n.input ?? []) {
      if (!i) continue;
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name));
  const seen = new Map<string, number>();
  const layers: LinearLayer[] = [];

  const uniqueName = (base: string): string => {
    const k = seen.get(base) ?? 0;
    seen.set(base, k + 1);
    return k === 0 ? base : `${base}#${k}`;
  };

  for (const n of graph.node ?? []) {
    const [xName, wName, cName] = n.input ?? [];
    if (!xName || !wName || inits.has(xName)) continue;
    // `…/nbits_lo/MatMulNBits`: the second 4-bit plane of an 8-bit GGUF weight (src/import/quant/), a helper of
    // the layer named by the first plane, not a layer of its own.
    if (n.opType === 'MatMulNBits' && n.domain === 'com.microsoft' && !(n.name ?? '').includes('/nbits_')) {
      const nbits = nbitsLayer(n, consumers, inits, graphOutputs);
      if (nbits) layers.push({ name: uniqueName(modulePath(n.name ?? '', wName)), nodeName: n.name ?? '', weightName: wName, inputTensor: xName, ...nbits });
      continue;
    }
    const w = inits.get(wName);
    if (!w || w.dataType !== FLOAT) continue;
    const dims = tensorDims(w);
    if (dims.length !== 2) continue;
    const y = n.output?.[0];
    if (!y) continue;

    // What differs between the two ops: where d_in/d_out sit, where the bias is, and whether x is transposed.
    let shape: Pick<LinearLayer, 'op' | 'dIn' | 'dOut' | 'outputTensor' | 'inputTransposed'> & { biasName?: string };
    if (n.opType === 'MatMul') {
      const [dIn, dOut] = dims as [number, number];
      const bias = followingBiasAdd(y, dOut, consumers, inits, graphOutputs);
      shape = { op: 'MatMul', dIn, dOut, outputTensor: bias ? bias.output : y, inputTransposed: false, ...(bias ? { biasName: bias.biasName } : {}) };
    } else if (n.opType === 'Gemm') {
      const transB = intAttr(n, 'transB', 0) === 1;
      const [dIn, dOut] = (transB ? [dims[1], dims[0]] : dims) as [number, number];
      const biasName = cName && inits.has(cName) ? cName : undefined;
      shape = { op: 'Gemm', dIn, dOut, outputTensor: y, inputTransposed: intAttr(n, 'transA', 0) === 1, ...(biasName ? { biasName } : {}) };
    } else {
      continue;
    }
    layers.push({
      name: uniqueName(modulePath(n.name ?? '', wName)),
      nodeName: n.name ?? '',
      weightName: wName,
      inputTensor: xName,
      ...shape,
    });
  }
  return layers;
}

/** A MatMulNBits node with a constant B: K and N from its attributes, bias from input 5 or a following Add. */
function nbitsLayer(
  n: NodeProto,
  consumers: ReadonlyMap<string, NodeProto[]>,
  inits: ReadonlyMap<string, TensorProto>,
  graphOutputs: ReadonlySet<string | null | undefined>,
): Pick<LinearLayer, 'op' | 'dIn' | 'dOut' | 'outputTensor' | 'inputTransposed' | 'biasName'> | undefined {
  const dIn = intAttr(n, 'K', 0);
  const dOut = intAttr(n, 'N', 0);
  const y = n.output?.[0];
  if (dIn <= 0 || dOut <= 0 || !y || !inits.has(n.input![1]!)) return undefined;
  const ownBias = n.input?.[5];
  const bias = ownBias ? undefined : followingBiasAdd(y, dOut, consumers, inits, graphOutputs);
  return {
    op: 'MatMulNBits',
    dIn,
    dOut,
    outputTensor: bias ? bias.output : y,
    inputTransposed: false,
    ...(ownBias ? { biasName: ownBias } : bias ? { biasName: bias.biasName } : {}),
  };
}

/** The `Add(y, bias)` right after a MatMul, when y feeds nothing else and bias is a [d_out] initializer. */
function followingBiasAdd(
  y: string,
  dOut: number,
  consumers: ReadonlyMap<string, NodeProto[]>,
  inits: ReadonlyMap<string, TensorProto>,
  graphOutputs: ReadonlySet<string | null | undefined>,
): { biasName: string; output: string } | undefined {
  const users = consumers.get(y) ?? [];
  if (users.length !== 1 || graphOutputs.has(y)) return undefined;
  const add = users[0]!;
  if (add.opType !== 'Add' || (add.input ?? []).length !== 2 || !add.output?.[0]) return undefined;
  const other = add.input![0] === y ? add.input![1] : add.input![0];
  const b = other ? inits.get(other) : undefined;
  if (!b || !other) return undefined;
  const bd = tensorDims(b);
  if (bd.length !== 1 || bd[0] !== dOut) return undefined;
  return { biasName: other, output: add.output[0] };
}
