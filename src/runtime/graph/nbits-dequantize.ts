/**
 * The float32 form of a quantized import, built at load: every MatMulNBits layer — its planes and its offset
 * correction, as src/import/quant/nbits-nodes.ts emits them — becomes one MatMul on the dequantized weight.
 * The runtime runs it for batches of several rows (PATCHBAY_WIDE_SESSION=f32, engine.ts): ORT 1.30's CPU
 * MatMulNBits at accuracy_level 0 re-dequantizes its blocks on every multi-row run and then multiplies in
 * float32 (4–6× its one-row cost, BENCHMARKS.md "q4 race"), while a prepacked float32 MatMul reads 4× the bytes
 * once. Same arithmetic as the q4 graph at level 0 (w = scale·(u − zp) + offset, products and sums in float32):
 * equal up to summation order, and equal to the f32 import of the same GGUF.
 *
 * One layer, scope X (node names of the emitter):
 *     X/MatMulNBits (hi or only plane)  [+ X/nbits_lo/MatMulNBits + X/nbits_lo/Add]
 *     [+ X/nbits_offset/FusedMatMul(blocksum(x), offsets [nb, N]) + X/nbits_offset/Add]
 *  →  X/MatMul(x, W [K, N]),  W[k, n] = Σ_planes scale[n, b]·(u[n, k] − zp[n, b]) + offset[b, n],  b = ⌊k / block⌋
 * The blocksum products and any initializer left unread afterwards are dropped. MatMulNBits nodes with a
 * bias or g_idx input are left as they are (the importer never writes those).
 */
import { floatInitializer, floatsOf, intAttr, node, pruneUnread, rawBytesOf, type ModelProto, type NodeProto, type TensorProto } from './onnx.ts';
import { modulePath } from './module-path.ts';

const MNB = 'MatMulNBits';

interface Plane {
  node: NodeProto;
  data: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array | undefined;
}

/** Rewrites `model` in place; returns how many layers became float32 MatMuls. */
export function dequantizeNBitsLayers(model: ModelProto): number {
  const graph = model.graph!;
  const nodes = graph.node ?? [];
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const byName = new Map(nodes.map((n) => [n.name ?? '', n]));
  const replaced = new Map<NodeProto, NodeProto>(); // the layer's last node → its MatMul
  const dropped = new Set<NodeProto>();
  let layers = 0;
  for (const hi of nodes) {
    if (hi.opType !== MNB || hi.domain !== 'com.microsoft' || (hi.name ?? '').includes('/nbits_lo/')) continue;
    const scope = (hi.name ?? '').replace(/\/MatMulNBits$/, '');
    const lo = byName.get(`${scope}/nbits_lo/MatMulNBits`);
    const planes = [hi, ...(lo ? [lo] : [])].map((n) => plane(n, inits));
    if (planes.some((p) => p === undefined)) continue;
    const loAdd = lo && byName.get(`${scope}/nbits_lo/Add`);
    const offMul = byName.get(`${scope}/nbits_offset/FusedMatMul`);
    const offAdd = offMul && byName.get(`${scope}/nbits_offset/Add`);
    if ((lo && !loAdd) || (offMul && !offAdd)) continue;
    const offsets = offMul ? floatsOf(inits.get(offMul.input![1]!)) : undefined;
    if (offMul && !offsets) continue;
    const last = offAdd ?? loAdd ?? hi;
    const K = intAttr(hi, 'K', 0);
    const N = intAttr(hi, 'N', 0);
    const name = `${modulePath(hi.name ?? '', '')}.dequantized.weight`;
    graph.initializer!.push(floatInitializer(name, [K, N], dense(planes as Plane[], K, N, offsets)));
    replaced.set(last, node('MatMul', `${scope}/MatMul`, [hi.input![0]!, name], [last.output![0]!]));
    for (const n of [hi, lo, loAdd, offMul, offAdd]) if (n && n !== last) dropped.add(n);
    layers++;
  }
  graph.node = nodes.filter((n) => !dropped.has(n)).map((n) => replaced.get(n) ?? n);
  pruneUnread(model); // the shared blocksums, and every initializer the MatMuls replaced
  return layers;
}

function plane(n: NodeProto, inits: Map<string, TensorProto>): Plane | undefined {
  const [, b, s, zp, gIdx, bias] = n.input ?? [];
  if ((gIdx ?? '') !== '' || (bias ?? '') !== '') return undefined;
  const data = rawBytesOf(inits.get(b ?? ''));
  const scales = floatsOf(inits.get(s ?? ''));
  const zeroPoints = zp ? rawBytesOf(inits.get(zp)) : undefined;
  if (!data || !scales || (zp && !zeroPoints)) return undefined;
  return { node: n, data, scales, zeroPoints };
}

/**
 * W [K, N] row-major (MatMul's B). MatMulNBits' layout: B [N, nb, block·bits/8], low nibble first; scales
 * [N·nb]; zero points [N, ⌈nb·bits/8⌉] packed like the data, default 2^(bits−1). Each plane's term
 * (u − zp)·scale is exact in float64 and rounded once on store, as ORT's float32 product; planes and offset
 * are summed in float32 storage. Built TILE output columns at a time ([TILE, K] rows, then written
 * transposed), so both the packed reads and the [K, N] writes stay sequential.
 */
function dense(planes: Plane[], K: number, N: number, offsets: Float32Array | undefined): Float32Array {
  const TILE = 64;
  const w = new Float32Array(K * N);
  const rows = new Float32Array(TILE * K);
  const nbOff = offsets ? offsets.length / N : 0;
  for (let n0 = 0; n0 < N; n0 += TILE) {
    const T = Math.min(TILE, N - n0);
    rows.fill(0);
    for (const p of planes) {
      const bits = intAttr(p.node, 'bits', 4);
      const block = intAttr(p.node, 'block_size', 32);
      const nb = Math.ceil(K / block);
      const perBlock = block; // values per block; the blob holds block·bits/8 bytes
      const zpCols = Math.ceil((nb * bits) / 8);
      const mid = 1 << (bits - 1);
      for (let t = 0; t < T; t++) {
        const n = n0 + t;
        for (let b = 0; b < nb; b++) {
          const scale = p.scales[n * nb + b]!;
          const zp = p.zeroPoints ? unpack(p.zeroPoints, n * zpCols * (8 / bits) + b, bits) : mid;
          const first = (n * nb + b) * perBlock; // value index of the block's first element
          const kEnd = Math.min(K, (b + 1) * block);
          for (let k = b * block, j = first; k < kEnd; k++, j++) rows[t * K + k]! += (unpack(p.data, j, bits) - zp) * scale;
        }
      }
    }
    for (let k = 0; k < K; k++) {
      const off = offsets ? Math.floor(k / (K / nbOff)) * N : -1;
      for (let t = 0; t < T; t++) w[k * N + n0 + t] = off >= 0 ? rows[t * K + k]! + offsets![off + n0 + t]! : rows[t * K + k]!;
    }
  }
  return w;
}

/** Element `i` of a packed array of `bits`-bit unsigned values (4-bit: low nibble first). */
function unpack(data: Uint8Array, i: number, bits: number): number {
  if (bits === 8) return data[i]!;
  const byte = data[i >> 1]!;
  return i & 1 ? byte >> 4 : byte & 15;
}
