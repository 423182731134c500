/**
 * GGML tensor types: id (as stored in GGUF tensor infos), weights per block and bytes per block.
 * Sizes follow ggml.c's `type_traits` (QK_K = 256 for the K-quants). Only the types the importer can
 * dequantize are listed as readable; the others are named so an error can say what the file holds.
 */
export interface GgmlType {
  id: number;
  name: string;
  /** Weights per block (1 for plain float types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

const t = (id: number, name: string, blockSize: number, typeSize: number): GgmlType => ({ id, name, blockSize, typeSize });

/** The types this importer dequantizes. */
export const READABLE_TYPES: readonly GgmlType[] = [
  t(0, 'F32', 1, 4),
  t(1, 'F16', 1, 2),
  t(2, 'Q4_0', 32, 18), // f16 d + 16 bytes of nibbles
  t(3, 'Q4_1', 32, 20), // f16 d + f16 m + 16 bytes
  t(8, 'Q8_0', 32, 34), // f16 d + 32 int8
  t(12, 'Q4_K', 256, 144), // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
  t(14, 'Q6_K', 256, 210), // 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales, f16 d
  t(30, 'BF16', 1, 2),
];

/** Known but not dequantized here: named in the error message. */
const OTHER_NAMES: Record<number, string> = {
  6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 13: 'Q5_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS',
  18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
  27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

const BY_ID = new Map(READABLE_TYPES.map((x) => [x.id, x]));

export function ggmlType(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}

export function ggmlTypeName(id: number): string {
  return BY_ID.get(id)?.name ?? OTHER_NAMES[id] ?? `unknown type ${id}`;
}
