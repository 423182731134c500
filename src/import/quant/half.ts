/** IEEE 754 binary16 → number (exact: every f16 value is representable in f32/f64). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Little-endian f16 at byte `offset`. */
export function readHalf(bytes: Uint8Array, offset: number): number {
  return halfToFloat(bytes[offset]! | (bytes[offset + 1]! << 8));
}
