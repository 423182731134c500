/**
 * Rewrite a decoder so it computes logits only for the positions a step needs.
 *
 * Prefill of p tokens otherwise multiplies all p hidden states by lm_head ([d, V]: the largest matrix of a
 * small model, 49 k columns for SmolLM2) and copies p·V floats out of ORT, although sampling reads only the
 * last position. The rewrite slices the final hidden state before lm_head:
 *
 *     h [batch, seq, d]  →  h[:, logits_start:, :]  [batch, seq − logits_start, d]  →  lm_head  →  logits
 *
 * with `logits_start` a new int64 [1] graph input (negative counts from the end, as in Slice): the engine
 * feeds −1 for "last position only" and −k when a row needs its last k positions (prompt logprobs, echo).
 * Rows are left-padded, so every row's last real position is the batch's last column.
 *
 * Model-agnostic: h is the first input of the node that produces the `logits` output (a MatMul,
 * MatMulNBits or a MatMul followed by a bias Add), found from the graph, not by name; every consumer of h
 * reads the sliced tensor, so correction terms that read h (as 4-bit imports add) stay consistent. A delta
 * branch added on lm_head afterwards reads the sliced tensor too. Graphs where h is 2-D (Gemm exports) are
 * left alone: `sliceLogits` returns false and the engine reads full logits.
 */
import { INT64, int64Initializer, node, tensorValueInfo, valueInfoDims, type ModelProto, type NodeProto } from './onnx.ts';

export const LOGITS_START_INPUT = 'logits_start';

const PROJECTIONS = new Set(['MatMul', 'MatMulNBits', 'FusedMatMul']);
/** What computes a 4-bit import's blocksum(x) (a FusedMatMul by a 0/1 indicator; older imports: ReduceSum). */
const BLOCKSUM_OPS = new Set(['ReduceSum', 'MatMul', 'FusedMatMul']);

/** Mutates `model`; true when the `logits_start` input was added. */
export function sliceLogits(model: ModelProto): boolean {
  const graph = model.graph;
  if (!graph || (graph.input ?? []).some((i) => i.name === LOGITS_START_INPUT)) return false;
  const logits = (graph.output ?? []).find((o) => o.name === 'logits');
  if (!logits) return false;
  const nodes = graph.node ?? [];
  const inits = new Set((graph.initializer ?? []).map((t) => t.name));
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) if (o) producer.set(o, n);

  // Through Adds (a bias, or a 4-bit import's plane sum and offset correction) to the projection itself.
  let head = producer.get('logits');
  for (let hops = 0; head?.opType === 'Add' && hops < 4; hops++) {
    // A bias Add, or a 4-bit head's plane sum / `MatMulNBits + blocksum correction` (import/quant/nbits-nodes.ts):
    // the projection of the hidden state is the MatMulNBits, else an inner Add, else the MatMul not fed by a blocksum.
    const operands = (head.input ?? []).filter((i) => i && !inits.has(i)).map((i) => producer.get(i!));
    head =
      operands.find((n) => n?.opType === 'MatMulNBits') ??
      operands.find((n) => n?.opType === 'Add') ??
      operands.find((n) => PROJECTIONS.has(n?.opType ?? '') && !BLOCKSUM_OPS.has(producer.get(n!.input?.[0] ?? '')?.opType ?? ''));
  }
  if (!head || !PROJECTIONS.has(head.opType ?? '')) return false;
  const h = head.input?.[0];
  if (!h || inits.has(h) || !is3d(model, h)) return false;

  const sliced = `${h}/logits_slice`;
  graph.initializer = [
    ...(graph.initializer ?? []),
    int64Initializer('/logits_slice/ends', [Number.MAX_SAFE_INTEGER]),
    int64Initializer('/logits_slice/axes', [1]),
  ];
  graph.input = [...(graph.input ?? []), tensorValueInfo(LOGITS_START_INPUT, INT64, [1])];
  for (const n of nodes) n.input = (n.input ?? []).map((i) => (i === h ? sliced : i));
  const slice = node('Slice', '/logits_slice/Slice', [h, LOGITS_START_INPUT, '/logits_slice/ends', '/logits_slice/axes'], [sliced]);
  const at = nodes.findIndex((n) => (n.output ?? []).includes(h));
  graph.node = at < 0 ? [slice, ...nodes] : [...nodes.slice(0, at + 1), slice, ...nodes.slice(at + 1)];

  // The logits' sequence dim is no longer the input's: give it its own name and drop stale intermediate shapes.
  const dims = valueInfoDims(logits);
  if (dims?.length === 3) {
    const type = logits.type?.tensorType?.elemType ?? 1;
    Object.assign(logits, tensorValueInfo('logits', type, [dims[0], 'logits_length', dims[2]]));
  }
  const downstream = downstreamOf(sliced, graph.node);
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !downstream.has(v.name ?? ''));
  return true;
}

function is3d(model: ModelProto, tensor: string): boolean {
  const g = model.graph!;
  const vi = [...(g.valueInfo ?? []), ...(g.input ?? []), ...(g.output ?? [])].find((v) => v.name === tensor);
  const dims = vi ? valueInfoDims(vi) : undefined;
  return dims === undefined || dims.length === 3;
}

/** Every tensor computed from `start` (nodes are in topological order). */
function downstreamOf(start: string, nodes: readonly NodeProto[]): Set<string> {
  const reached = new Set([start]);
  for (const n of nodes) if ((n.input ?? []).some((i) => reached.has(i))) for (const o of n.output ?? []) if (o) reached.add(o);
  return reached;
}
