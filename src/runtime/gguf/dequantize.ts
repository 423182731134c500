/** Dequantize one GGUF tensor to float32, in GGUF element order (dims[0] fastest). */
import { dequantBf16, dequantF16, dequantF32, dequantQ4_0, dequantQ4_1, dequantQ8_0 } from './dequantize-blocks.ts';
import { dequantQ4_K, dequantQ6_K } from './dequantize-kquants.ts';
import { invalidGguf } from './errors.ts';
import type { GgufFile, GgufTensorInfo } from './reader.ts';

const BY_TYPE: Record<string, (src: Uint8Array, n: number) => Float32Array> = {
  F32: dequantF32,
  F16: dequantF16,
  BF16: dequantBf16,
  Q8_0: dequantQ8_0,
  Q4_0: dequantQ4_0,
  Q4_1: dequantQ4_1,
  Q4_K: dequantQ4_K,
  Q6_K: dequantQ6_K,
};

export const DEQUANTIZABLE_TYPES = Object.keys(BY_TYPE);

export function dequantizeBytes(typeName: string, bytes: Uint8Array, elements: number): Float32Array {
  const fn = BY_TYPE[typeName];
  if (!fn) throw new Error(`no dequantizer for ${typeName}`);
  return fn(bytes, elements);
}

export function dequantizeTensor(file: GgufFile, info: GgufTensorInfo): Float32Array {
  if (!info.type || !BY_TYPE[info.type.name]) {
    throw invalidGguf(file.source, `tensor ${info.name} has type ${info.typeName}; the importer reads ${DEQUANTIZABLE_TYPES.join(', ')}`);
  }
  return dequantizeBytes(info.type.name, file.readTensorBytes(info), info.elements);
}
