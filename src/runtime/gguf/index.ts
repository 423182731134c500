export { GgufFile, DEFAULT_LIMITS, type GgufTensorInfo, type GgufLimits } from './reader.ts';
export { GgufMetadata, type GgufValue } from './metadata.ts';
export { dequantizeTensor, dequantizeBytes, DEQUANTIZABLE_TYPES } from './dequantize.ts';
export { unpermuteRows } from './llama-permute.ts';
export { invalidGguf, unsupportedGguf } from './errors.ts';
export { ggmlTypeName, READABLE_TYPES } from './ggml-types.ts';
