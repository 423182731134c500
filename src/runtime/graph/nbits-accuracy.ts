/**
 * Set `accuracy_level` on every `com.microsoft.MatMulNBits` node at load (PATCHBAY_NBITS_ACCURACY).
 *
 * The attribute is the kernel's compute precision, not part of the weights: 0 (unset) dequantizes blocks
 * and multiplies in float32 — equal to the dequantized f32 model up to summation order; 4 quantizes the
 * activations to int8 per block and uses MLAS' integer kernels — faster, approximate (measured in
 * BENCHMARKS.md, "Exact 4-bit weights"). 1–3 (fp32/fp16/bf16) fall back to the float path on CPU.
 * Rewriting it lets one imported model serve either way without re-importing.
 */
import { decodeModel, encodeModel, type ModelProto } from './onnx.ts';
import { mergeSplitPlanes } from './nbits-merge-planes.ts';

/** `auto`: 0 on 4-bit nodes, 4 on 8-bit ones (the importer's default; see src/import/quant/nbits-linear.ts). */
export type NBitsAccuracy = 0 | 1 | 2 | 3 | 4 | 'auto';

/**
 * Sets the level on every MatMulNBits node of `model` in place; returns how many nodes it touched. At level 4
 * an 8-bit weight that the q4 importer split into two 4-bit planes runs as one 8-bit node again
 * (nbits-merge-planes.ts): the planes only pay off at level 0.
 */
export function setNBitsAccuracy(model: ModelProto, level: NBitsAccuracy): number {
  let count = 0;
  for (const n of model.graph?.node ?? []) {
    if (n.opType !== 'MatMulNBits' || n.domain !== 'com.microsoft') continue;
    const attrs = (n.attribute ?? []).filter((a) => a.name !== 'accuracy_level');
    const bits = Number(attrs.find((a) => a.name === 'bits')?.i ?? 4);
    attrs.push({ name: 'accuracy_level', type: 2 /* INT */, i: level === 'auto' ? (bits === 8 ? 4 : 0) : level });
    n.attribute = attrs;
    count++;
  }
  if (level === 4) mergeSplitPlanes(model);
  return count;
}

/** Bytes with the level applied; the same bytes when the graph has no MatMulNBits node. */
export function withNBitsAccuracy(bytes: Uint8Array, level: NBitsAccuracy): Uint8Array {
  const model = decodeModel(bytes);
  return setNBitsAccuracy(model, level) > 0 ? encodeModel(model) : bytes;
}
