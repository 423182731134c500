/**
 * Experiment for bench/graph-overhead (not used by the server): fuse the delta branches of layers that
 * share an input (Llama q/k/v, gate/up) into one branch with group-level feeds,
 *     d = (x·A_g)·B_g,  A_g [batch, d_in, Σr], B_g [batch, Σr, Σd_out] (block-diagonal), split along d_out,
 * so a group costs 2 MatMuls + 1 Split + n Adds instead of n × (2 MatMuls + 1 Add).
 */
import * as ort from 'onnxruntime-node';
import { addDeltaBranches, findLinearLayers, layerSelector, type DeltaSelection, type LinearLayer } from '../../src/runtime/graph/index.ts';
import { FLOAT, decodeModel, encodeModel, int64Initializer, node, tensorValueInfo, type NodeProto } from '../../src/runtime/graph/onnx.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';

export function fuseSharedInputs(bytes: Uint8Array, selection: DeltaSelection) {
  const select = layerSelector(selection);
  const chosen = findLinearLayers(decodeModel(bytes)).filter(select);
  const byInput = new Map<string, LinearLayer[]>();
  for (const l of chosen) byInput.set(l.inputTensor, [...(byInput.get(l.inputTensor) ?? []), l]);
  const groups = [...byInput.values()].filter((g) => g.length > 1);
  const grouped = new Set(groups.flat().map((l) => l.name));
  const single = addDeltaBranches(bytes, (l) => select(l) && !grouped.has(l.name));
  const model = decodeModel(single.bytes);
  const graph = model.graph!;
  const producerOf = new Map<string, NodeProto>();
  for (const n of graph.node!) for (const o of n.output ?? []) producerOf.set(o, n);
  const after = new Map<NodeProto, NodeProto[]>();
  groups.forEach((g, gi) => {
    const p = `/delta/group${gi}`;
    const dIn = g[0]!.dIn;
    const dOut = g.reduce((s, l) => s + l.dOut, 0);
    graph.input!.push(
      tensorValueInfo(`delta.group${gi}.a`, FLOAT, [single.batchDim, dIn, `r_group${gi}`]),
      tensorValueInfo(`delta.group${gi}.b`, FLOAT, [single.batchDim, `r_group${gi}`, dOut]),
    );
    graph.initializer!.push(int64Initializer(`${p}/split`, g.map((l) => l.dOut)));
    const nodes: NodeProto[] = [
      node('MatMul', `${p}/xa`, [g[0]!.inputTensor, `delta.group${gi}.a`], [`${p}/xa_out`]),
      node('MatMul', `${p}/xab`, [`${p}/xa_out`, `delta.group${gi}.b`], [`${p}/xab_out`]),
      node('Split', `${p}/split`, [`${p}/xab_out`, `${p}/split`], g.map((_, i) => `${p}/part${i}`), [{ name: 'axis', type: 2, i: -1 }]),
    ];
    g.forEach((l, i) => {
      const prod = producerOf.get(l.outputTensor)!;
      prod.output = prod.output!.map((o) => (o === l.outputTensor ? `${l.outputTensor}/pre_delta` : o));
      nodes.push(node('Add', `${p}/add${i}`, [`${l.outputTensor}/pre_delta`, `${p}/part${i}`], [l.outputTensor]));
    });
    // The group's nodes go after the last producer of the group, in graph order.
    const last = graph.node!.filter((n) => g.some((l) => producerOf.get(l.outputTensor) === n)).pop()!;
    after.set(last, nodes);
  });
  graph.node = graph.node!.flatMap((n) => [n, ...(after.get(n) ?? [])]);
  const out = encodeModel(model);

  return {
    bytes: out,
    groups: groups.length,
    feeds(batch: number, rank: number): Record<string, ort.Tensor> {
      const feeds: Record<string, ort.Tensor> = {};
      const rows = Array.from({ length: batch }, (_, i) =>
        rank === 0 ? undefined : { key: `r${i}`, layers: new Map(single.layers.map((l) => [l.name, { rank, a: new Float32Array(l.dIn * rank).fill(0.01), b: new Float32Array(rank * l.dOut).fill(0.01) }])) },
      );
      Object.assign(feeds, deltaTensors(single.layers, rows));
      groups.forEach((g, gi) => {
        const R = rank * g.length;
        const dOut = g.reduce((s, l) => s + l.dOut, 0);
        feeds[`delta.group${gi}.a`] = new ort.Tensor('float32', new Float32Array(batch * g[0]!.dIn * R).fill(0.01), [batch, g[0]!.dIn, R]);
        feeds[`delta.group${gi}.b`] = new ort.Tensor('float32', new Float32Array(batch * R * dOut).fill(0.01), [batch, R, dOut]);
      });
      return feeds;
    },
  };
}
