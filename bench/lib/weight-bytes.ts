/**
 * Bytes of weights one decode step must read, from the ONNX graph: every linear layer's weight (the output
 * head included: a tied head reads the whole embedding table), plus for MatMulNBits layers their scales, second
 * planes and zero points, and the offset tables and block indicators of their corrections. The embedding lookup reads one row per token and is not counted.
 * Divided by the measured memory bandwidth this is the time floor of a batch-1 decode step on CPU.
 */
import { findLinearLayers } from '../../src/runtime/graph/index.ts';
import { decodeModel, onnx, tensorDims, type TensorProto } from '../../src/runtime/graph/onnx.ts';

const T = onnx.TensorProto.DataType;
const ELEM: Partial<Record<number, number>> = { [T.FLOAT]: 4, [T.FLOAT16]: 2, [T.UINT8]: 1, [T.INT8]: 1, [T.INT64]: 8, [T.INT32]: 4 };

export function tensorBytes(t: TensorProto): number {
  return tensorDims(t).reduce((a, b) => a * b, 1) * (ELEM[t.dataType ?? 0] ?? 4);
}

export function decodeWeightBytes(onnxBytes: Uint8Array): number {
  const model = decodeModel(onnxBytes);
  const inits = new Map((model.graph?.initializer ?? []).map((t) => [t.name!, t]));
  const counted = new Set<string>();
  const add = (name: string | null | undefined) => {
    if (name && inits.has(name)) counted.add(name);
  };
  const nodeByName = new Map((model.graph?.node ?? []).map((n) => [n.name ?? '', n]));
  for (const layer of findLinearLayers(model)) {
    add(layer.weightName);
    if (layer.op === 'MatMulNBits') add(nodeByName.get(layer.nodeName)?.input?.[2]); // scales
  }
  for (const n of model.graph?.node ?? []) {
    // every MatMulNBits operand: also the second plane of a split 8-bit weight (`…/nbits_lo/`) and zero points
    if (n.opType === 'MatMulNBits') for (const i of [1, 2, 3]) add(n.input?.[i]);
    // offset tables and block indicators of the q4 corrections (deliberately not linear layers, see
    // src/import/quant/nbits-nodes.ts; MatMul in imports before the FusedMatMul form)
    if (/\/nbits_(offset|blocksum)\/(Fused)?MatMul$/.test(n.name ?? '')) add(n.input?.[1]);
  }
  let bytes = 0;
  for (const name of counted) bytes += tensorBytes(inits.get(name)!);
  return bytes;
}
