/**
 * Rewrite an ONNX model so every selected linear layer carries a per-row low-rank delta branch.
 *
 * Semantics, per selected layer with input x [batch, seq, d_in] and output y [batch, seq, d_out]:
 *
 *     y'[i] = y[i] + (x[i] · A[i]) · B[i]        A = delta.<name>.a  float32 [batch, d_in, r_<name>]
 *                                               B = delta.<name>.b  float32 [batch, r_<name>, d_out]
 *
 * Each batch row i has its own factors (rows without an adapter, and rank padding, are zeros), so one
 * `session.run` serves requests with different adapters. r_<name> is a free dimension per layer and may
 * be 0 (then the branch adds zeros). Gemm layers take 2-D x [batch·seq, d_in]; their branch reshapes x to
 * [batch, seq, d_in] (batch read from A's first dim) and the result back to [batch·seq, d_out].
 *
 * Consumers are rewired by renaming: the layer's producer (MatMul, bias Add or Gemm) now writes
 * `<y>/pre_delta`, and the branch's final Add writes `<y>`. Every consumer — later nodes, subgraphs
 * referencing it from an outer scope, graph outputs, value_info — therefore sees y' untouched.
 */
import { findLinearLayers, type LinearLayer } from './linear-layers.ts';
import { layerSelector, DEFAULT_DELTA_SELECTION, type DeltaSelection, type LayerPredicate } from './selection.ts';
import {
  FLOAT,
  decodeModel,
  encodeModel,
  int64Initializer,
  node,
  onnx,
  tensorValueInfo,
  valueInfoDims,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from './onnx.ts';

/** What the runtime needs to feed one layer's branch. */
export interface DeltaLayer {
  name: string;
  dIn: number;
  dOut: number;
  /** Graph input names: `delta.<name>.a` [batch, dIn, r], `delta.<name>.b` [batch, r, dOut], float32. */
  aInput: string;
  bInput: string;
}

export interface DeltaRewrite {
  bytes: Uint8Array;
  /** Layers that got a branch, in graph order. */
  layers: DeltaLayer[];
  /** Every linear layer found (superset of `layers`), for error messages about non-attachable modules. */
  linearLayers: LinearLayer[];
  /** Symbolic batch dimension shared with `input_ids`. */
  batchDim: string;
  /**
   * Whether initializers live in external data files. Their locations are relative to the model file,
   * so such bytes must be written next to the original model and loaded by path, not from a buffer.
   */
  usesExternalData: boolean;
}

export function deltaInputNames(name: string): { aInput: string; bInput: string } {
  return { aInput: `delta.${name}.a`, bInput: `delta.${name}.b` };
}

export function addDeltaBranches(
  input: Uint8Array | ModelProto,
  selection: DeltaSelection | LayerPredicate = DEFAULT_DELTA_SELECTION,
): DeltaRewrite {
  const model = input instanceof Uint8Array ? decodeModel(input) : input;
  const graph = model.graph;
  if (!graph) throw new Error('ONNX model has no graph');
  const linearLayers = findLinearLayers(model);
  const select = layerSelector(selection);
  const chosen = linearLayers.filter(select);
  const batchDim = findBatchDim(model);

  const producerOf = new Map<string, NodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) if (o) producerOf.set(o, n);

  const branchesAfter = new Map<NodeProto, NodeProto[]>();
  const newInits: TensorProto[] = [];
  const layers: DeltaLayer[] = [];
  for (const layer of chosen) {
    const producer = producerOf.get(layer.outputTensor);
    if (!producer) throw new Error(`no producer for ${layer.outputTensor}`);
    const { aInput, bInput } = deltaInputNames(layer.name);
    const rank = `r_${layer.name}`;
    (graph.input ??= []).push(
      tensorValueInfo(aInput, FLOAT, [batchDim, layer.dIn, rank]),
      tensorValueInfo(bInput, FLOAT, [batchDim, rank, layer.dOut]),
    );
    const y = layer.outputTensor;
    const yBase = `${y}/pre_delta`;
    producer.output = producer.output!.map((o) => (o === y ? yBase : o));
    const nodes = isTwoD(model, layer)
      ? branch2d(layer, aInput, bInput, yBase, y, newInits)
      : branch3d(layer, aInput, bInput, yBase, y);
    branchesAfter.set(producer, [...(branchesAfter.get(producer) ?? []), ...nodes]);
    layers.push({ name: layer.name, dIn: layer.dIn, dOut: layer.dOut, aInput, bInput });
  }

  graph.node = (graph.node ?? []).flatMap((n) => [n, ...(branchesAfter.get(n) ?? [])]);
  graph.initializer = [...(graph.initializer ?? []), ...newInits];
  const usesExternalData = (graph.initializer ?? []).some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  return { bytes: encodeModel(model), layers, linearLayers, batchDim, usesExternalData };
}

/** x [b, s, d_in] → xa [b, s, r] → xab [b, s, d_out]; y' = y + xab. */
function branch3d(layer: LinearLayer, a: string, b: string, yBase: string, y: string): NodeProto[] {
  const p = `/delta/${layer.name}`;
  return [
    node('MatMul', `${p}/xa`, [layer.inputTensor, a], [`${p}/xa_out`]),
    node('MatMul', `${p}/xab`, [`${p}/xa_out`, b], [`${p}/xab_out`]),
    node('Add', `${p}/add`, [yBase, `${p}/xab_out`], [y]),
  ];
}

/** 2-D x [b·s, d_in] (Gemm): reshape to [b, s, d_in] with b = A.shape[0], branch, reshape back. */
function branch2d(layer: LinearLayer, a: string, b: string, yBase: string, y: string, inits: TensorProto[]): NodeProto[] {
  const p = `/delta/${layer.name}`;
  const perm = [{ name: 'perm', type: 7 /* INTS */, ints: [1, 0] }];
  inits.push(
    int64Initializer(`${p}/c0`, [0]),
    int64Initializer(`${p}/c1`, [1]),
    int64Initializer(`${p}/rest`, [-1, layer.dIn]),
    int64Initializer(`${p}/out2d`, [-1, layer.dOut]),
  );
  const x = layer.inputTransposed ? `${p}/xT_out` : layer.inputTensor;
  return [
    ...(layer.inputTransposed ? [node('Transpose', `${p}/xT`, [layer.inputTensor], [x], perm)] : []),
    node('Shape', `${p}/a_shape`, [a], [`${p}/a_shape_out`]),
    node('Slice', `${p}/batch`, [`${p}/a_shape_out`, `${p}/c0`, `${p}/c1`], [`${p}/batch_out`]),
    node('Concat', `${p}/x3_shape`, [`${p}/batch_out`, `${p}/rest`], [`${p}/x3_shape_out`], [
      { name: 'axis', type: 2 /* INT */, i: 0 },
    ]),
    node('Reshape', `${p}/x3`, [x, `${p}/x3_shape_out`], [`${p}/x3_out`]),
    node('MatMul', `${p}/xa`, [`${p}/x3_out`, a], [`${p}/xa_out`]),
    node('MatMul', `${p}/xab`, [`${p}/xa_out`, b], [`${p}/xab_out`]),
    node('Reshape', `${p}/xab2`, [`${p}/xab_out`, `${p}/out2d`], [`${p}/xab2_out`]),
    node('Add', `${p}/add`, [yBase, `${p}/xab2_out`], [y]),
  ];
}

/**
 * Whether x is 2-D. Gemm always is; a MatMul's x is looked up in the graph's declared shapes and
 * assumed to be [batch, seq, d_in] (the Optimum decoder layout) when the export declares none.
 */
function isTwoD(model: ModelProto, layer: LinearLayer): boolean {
  if (layer.op === 'Gemm') return true;
  const g = model.graph!;
  const vi = [...(g.input ?? []), ...(g.valueInfo ?? []), ...(g.output ?? [])].find((v) => v.name === layer.inputTensor);
  const dims = vi ? valueInfoDims(vi) : undefined;
  return dims?.length === 2;
}

/** The symbolic batch dim of `input_ids` (or of the first graph input), so delta inputs share it. */
function findBatchDim(model: ModelProto): string {
  const inputs = model.graph?.input ?? [];
  const ids = inputs.find((i) => i.name === 'input_ids') ?? inputs[0];
  const d0 = ids ? valueInfoDims(ids)?.[0] : undefined;
  return typeof d0 === 'string' ? d0 : 'batch_size';
}
