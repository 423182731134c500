/**
 * A copy of a rewritten graph (delta-branches.ts) that keeps the branches of some layers only.
 *
 * Why: a branch whose rank is 0 in every row adds exact zeros, but its 3 nodes (MatMul, MatMul, Add) still run
 * every step at ~4–7 µs each. On SmolLM2 (210 branches, all-linear) a rank-16 LoRA on 32 attention layers
 * pays for 630 branch nodes per decode step, 178 branches of them empty (profiled, BENCHMARKS.md #6). A
 * session on the graph that keeps only the batch's layers computes the same
 *     y'[i] = y[i] + (x[i]·A[i])·B[i]   for kept layers,   y'[i] = y[i]   for the others
 * (the dropped branches added 0 exactly), with 3 nodes per used layer instead of 3 per selected layer.
 *
 * Undoing a branch reverses the rewrite's renaming: the producer writes `<y>` again instead of
 * `<y>/pre_delta`, and the branch's nodes, its two graph inputs and its constants are removed.
 */
import { decodeModel, encodeModel, type NodeProto } from './onnx.ts';
import type { DeltaLayer } from './delta-branches.ts';

export function keepDeltaBranches(bytes: Uint8Array, layers: readonly DeltaLayer[], keep: ReadonlySet<string>): Uint8Array {
  const model = decodeModel(bytes);
  const graph = model.graph;
  if (!graph) throw new Error('ONNX model has no graph');
  const drop = layers.filter((l) => !keep.has(l.name));
  for (const name of keep) {
    if (!layers.some((l) => l.name === name)) throw new Error(`keepDeltaBranches: ${name} has no delta branch`);
  }
  // Branch nodes and constants are named `/delta/<layer>/<part>` (layer names hold no '/').
  const dropped = new Set(drop.map((l) => l.name));
  const inBranch = (n: string | null | undefined): boolean =>
    !!n && n.startsWith('/delta/') && dropped.has(n.slice('/delta/'.length, n.lastIndexOf('/')));
  // Producer renames: each dropped branch's final Add maps `<y>/pre_delta` back to `<y>`.
  const rename = new Map<string, string>();
  const dropNames = new Set(drop.map((l) => `/delta/${l.name}/add`));
  for (const n of graph.node ?? []) {
    if (!dropNames.has(n.name ?? '')) continue;
    const [yBase] = n.input ?? [];
    const y = n.output?.[0];
    if (!yBase || !y || yBase !== `${y}/pre_delta`) throw new Error(`delta branch ${n.name} is not in the rewrite's form`);
    rename.set(yBase, y);
  }
  if (rename.size !== drop.length) throw new Error(`found ${rename.size} of ${drop.length} delta branches to drop`);
  const kept: NodeProto[] = [];
  for (const n of graph.node ?? []) {
    if (inBranch(n.name)) continue;
    if (n.output?.some((o) => rename.has(o))) n.output = n.output.map((o) => rename.get(o) ?? o);
    kept.push(n);
  }
  graph.node = kept;
  const dropInputs = new Set(drop.flatMap((l) => [l.aInput, l.bInput]));
  graph.input = (graph.input ?? []).filter((i) => !dropInputs.has(i.name ?? ''));
  graph.initializer = (graph.initializer ?? []).filter((t) => !inBranch(t.name));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !inBranch(v.name) && !rename.has(v.name ?? ''));
  return encodeModel(model);
}
