/**
 * The alternative way for a base version to reach ORT (measured by bench/patches.ts, not used by the
 * runtime): the patched layers' weight initializers become graph inputs, fed on every run, so switching
 * versions is just feeding other tensors (no session build) — at the price of ORT not pre-packing them.
 */
import { Tensor } from 'onnxruntime-node';
import { decodeModel, encodeModel, FLOAT, tensorDims, tensorValueInfo } from '../../src/runtime/graph/onnx.ts';

/** `bytes` with the initializers `names` turned into graph inputs of the same name and shape. */
export function weightsAsInputs(bytes: Uint8Array, names: readonly string[]): Uint8Array {
  const model = decodeModel(bytes);
  const g = model.graph!;
  const wanted = new Set(names);
  const moved = (g.initializer ?? []).filter((t) => wanted.has(t.name ?? ''));
  if (moved.length !== wanted.size) throw new Error(`initializers not found: ${names.filter((n) => !moved.some((t) => t.name === n)).join(', ')}`);
  g.initializer = (g.initializer ?? []).filter((t) => !wanted.has(t.name ?? ''));
  for (const t of moved) (g.input ??= []).push(tensorValueInfo(t.name!, FLOAT, tensorDims(t)));
  return encodeModel(model);
}

export function weightFeeds(tensors: ReadonlyMap<string, { data: Float32Array; dims: number[] }>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of tensors) feeds[name] = new Tensor('float32', t.data, t.dims);
  return feeds;
}
