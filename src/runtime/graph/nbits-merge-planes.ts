/**
 * Merges an 8-bit weight that the q4 importer split into two exact 4-bit planes (src/import/quant/nbits-pack.ts
 * splitTo4Bit) back into one 8-bit MatMulNBits, for graphs that run at accuracy_level 4.
 *
 * Why only there: the planes exist because ORT 1.30's 8-bit MatMulNBits re-dequantizes its whole matrix on
 * every run at level 0 (BENCHMARKS.md, "8-bit head"), while its level-4 kernel (int8 activations) is fast. At
 * level 4 one 8-bit node reads the same bytes as the two planes but runs one kernel instead of two plus an
 * Add; for SmolLM2 that is the tied 49 152 × 576 head, the largest layer of a step.
 *
 * The planes: hi (scales 16s, zero point 8) and lo (scales s, zero points all 0). With u = 16·hi + lo:
 *     16s·(hi − 8) + s·lo = s·(u − 128)
 * so the merged node is 8-bit with lo's scales and the default zero point 128: the same values; only the
 * kernel's int8 rounding of the activations differs, as for every other node at level 4. That is every split of
 * a symmetric 8-bit type (Q8_0, Q6_K). A split whose low plane carries an offset table instead (a type with its
 * own block minimum, such as Q5_1, which the GGUF reader refuses today) stays as two planes.
 *
 * A tied embedding that looks its rows up in the same planes (the importer's GatherBlockQuantized per plane, an
 * Add, and the low plane's 8s gathered and added) is rewritten to one 8-bit GatherBlockQuantized on the merged
 * table, s·(u − 128) per element, so the table is still stored once. A lookup of another shape keeps reading the
 * planes, which then stay next to the merged copy.
 */
import { floatInitializer, floatsOf, intAttr, pruneUnread, rawBytesOf, type ModelProto, type NodeProto, type TensorProto } from './onnx.ts';
import { modulePath } from './module-path.ts';

const MNB = 'MatMulNBits';

/** Rewrites `model` in place; returns how many split layers became one 8-bit node. */
export function mergeSplitPlanes(model: ModelProto): number {
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const byName = new Map(nodes.map((n) => [n.name ?? '', n]));
  const dropped = new Set<NodeProto>();
  let merged = 0;
  for (const hi of nodes) {
    if (hi.opType !== MNB || hi.domain !== 'com.microsoft' || (hi.name ?? '').includes('/nbits_lo/')) continue;
    const scope = (hi.name ?? '').replace(/\/MatMulNBits$/, '');
    const lo = byName.get(`${scope}/nbits_lo/MatMulNBits`);
    const add = byName.get(`${scope}/nbits_lo/Add`);
    if (!lo || !add || intAttr(hi, 'bits', 4) !== 4 || intAttr(lo, 'bits', 4) !== 4) continue;
    if (intAttr(hi, 'accuracy_level', 0) !== 4 || intAttr(lo, 'accuracy_level', 0) !== 4) continue; // see above: level 4 only
    const K = intAttr(hi, 'K', 0);
    const N = intAttr(hi, 'N', 0);
    const block = intAttr(hi, 'block_size', 32);
    if (intAttr(lo, 'K', 0) !== K || intAttr(lo, 'N', 0) !== N || intAttr(lo, 'block_size', 32) !== block) continue;
    const [, hiB, , hiZp, ...hiRest] = hi.input ?? [];
    const [, loB, loS, loZp, ...loRest] = lo.input ?? [];
    if ((hiZp ?? '') !== '' || [...hiRest, ...loRest].some((i) => i !== '')) continue;
    const hiData = rawBytesOf(inits.get(hiB ?? ''));
    const loData = rawBytesOf(inits.get(loB ?? ''));
    const scales = floatsOf(inits.get(loS ?? ''));
    if (!hiData || !loData || !scales || hiData.length !== loData.length || hiData.length * 2 !== K * N) continue;
    // Only the low plane with zero points 0 (its offsets were exactly 8s) and no offset correction.
    if ((loZp ?? '') === '' || !rawBytesOf(inits.get(loZp!))?.every((b) => b === 0)) continue;
    if (byName.has(`${scope}/nbits_offset/FusedMatMul`)) continue;

    const base = `${modulePath(hi.name ?? '', '')}.nbits8`;
    graph.initializer!.push(
      { name: `${base}.weight`, dataType: 2 /* UINT8 */, dims: [N, K / block, block], rawData: joinPlanes(hiData, loData) },
      floatInitializer(`${base}.scales`, [N * (K / block)], scales),
    );
    hi.input = [hi.input![0]!, `${base}.weight`, `${base}.scales`];
    hi.output = [add.output![0]!];
    hi.attribute = (hi.attribute ?? []).map((a) => (a.name === 'bits' ? { ...a, i: 8 } : a));
    dropped.add(lo).add(add);
    for (const n of tiedLookup(nodes, inits, hiB!, loB!, scales, `${base}.weight`)) dropped.add(n);
    merged++;
  }
  graph.node = nodes.filter((n) => !dropped.has(n));
  pruneUnread(model); // the planes (and the lookup's offset table) once nothing reads them
  return merged;
}

/**
 * The importer's lookup in a split table (src/import/quant/nbits-nodes.ts `embedding`):
 *     g_hi = GBQ(hi, ids, s16) ; g_lo = GBQ(lo, ids, s) ; sum = Add(g_hi, g_lo) ; off = Gather(8s, ids) ; y = Add(sum, off)
 * becomes y = GBQ(u, ids, s) with bits 8 (default zero point 128) when the gathered offsets are exactly 8s.
 * Rewrites g_hi in place; returns the nodes it replaces. Anything else: left alone, returns none.
 */
function tiedLookup(nodes: NodeProto[], inits: Map<string, TensorProto>, hiB: string, loB: string, loScales: Float32Array, merged: string): NodeProto[] {
  const gbq = (data: string) => nodes.find((n) => n.opType === 'GatherBlockQuantized' && n.input?.[0] === data);
  const gHi = gbq(hiB);
  const gLo = gbq(loB);
  if (!gHi || !gLo || gHi.input![1] !== gLo.input![1] || (gHi.input![3] ?? '') !== '' || (gLo.input![3] ?? '') !== '') return [];
  const readers = (t: string) => nodes.filter((n) => n.input?.includes(t));
  const [sum, ...moreSum] = readers(gHi.output![0]!);
  if (!sum || moreSum.length > 0 || sum.opType !== 'Add' || !sum.input!.includes(gLo.output![0]!) || readers(gLo.output![0]!).length !== 1) return [];
  const [addOff, ...moreOff] = readers(sum.output![0]!);
  if (!addOff || moreOff.length > 0 || addOff.opType !== 'Add') return [];
  const offTensor = addOff.input!.find((i) => i !== sum.output![0]);
  const gather = nodes.find((n) => n.opType === 'Gather' && n.output?.[0] === offTensor && n.input?.[1] === gHi.input![1]);
  const offsets = gather && floatsOf(inits.get(gather.input![0]!));
  if (!gather || !offsets || readers(offTensor!).length !== 1 || offsets.length !== loScales.length) return [];
  for (let i = 0; i < offsets.length; i++) if (offsets[i] !== Math.fround(8 * loScales[i]!)) return [];
  gHi.input = [merged, gHi.input![1]!, gLo.input![2]!];
  gHi.output = [addOff.output![0]!];
  gHi.attribute = (gHi.attribute ?? []).map((a) => (a.name === 'bits' ? { ...a, i: 8 } : a));
  return [gLo, sum, gather, addOff];
}

/** The 8-bit bytes u = 16·hi + lo from the planes' nibbles (low nibble = even element, as splitTo4Bit packs). */
function joinPlanes(hi: Uint8Array, lo: Uint8Array): Uint8Array {
  const out = new Uint8Array(hi.length * 2);
  for (let i = 0; i < hi.length; i++) {
    const h = hi[i]!;
    const l = lo[i]!;
    out[2 * i] = ((h & 15) << 4) | (l & 15);
    out[2 * i + 1] = (h & 0xf0) | (l >> 4);
  }
  return out;
}
