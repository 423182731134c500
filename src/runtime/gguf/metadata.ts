/**
 * GGUF metadata values: the 13 value types of the GGUF spec (v2/v3), arrays included (nested up to a
 * fixed depth), read through a bounded ByteCursor. 64-bit integers become numbers when they are exactly
 * representable and stay bigint otherwise.
 */
import type { ByteCursor } from './byte-cursor.ts';
import { invalidGguf } from './errors.ts';

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufValue[];

export const VALUE_TYPE = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

export interface MetadataLimits {
  /** Longest string (key, value or array element), bytes. */
  maxStringBytes: number;
  /** Most elements in one array (a 256 k vocabulary plus margin). */
  maxArrayLength: number;
  maxArrayDepth: number;
}

export const DEFAULT_METADATA_LIMITS: MetadataLimits = { maxStringBytes: 16 << 20, maxArrayLength: 1 << 22, maxArrayDepth: 3 };

const bigToValue = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

export function readValue(c: ByteCursor, type: number, key: string, limits: MetadataLimits, depth = 0): GgufValue {
  switch (type) {
    case VALUE_TYPE.UINT8: return c.u8(key);
    case VALUE_TYPE.INT8: return c.i8(key);
    case VALUE_TYPE.UINT16: return c.u16(key);
    case VALUE_TYPE.INT16: return c.i16(key);
    case VALUE_TYPE.UINT32: return c.u32(key);
    case VALUE_TYPE.INT32: return c.i32(key);
    case VALUE_TYPE.FLOAT32: return c.f32(key);
    case VALUE_TYPE.FLOAT64: return c.f64(key);
    case VALUE_TYPE.UINT64: return bigToValue(c.u64(key));
    case VALUE_TYPE.INT64: return bigToValue(c.i64(key));
    case VALUE_TYPE.BOOL: {
      const b = c.u8(key);
      if (b > 1) throw invalidGguf(c.source, `metadata ${key}: bool byte is ${b}, not 0 or 1`);
      return b === 1;
    }
    case VALUE_TYPE.STRING: return c.string(`metadata ${key}`, limits.maxStringBytes);
    case VALUE_TYPE.ARRAY: {
      if (depth >= limits.maxArrayDepth) throw invalidGguf(c.source, `metadata ${key}: arrays nested deeper than ${limits.maxArrayDepth}`);
      const elemType = c.u32(`element type of ${key}`);
      if (elemType > VALUE_TYPE.FLOAT64) throw invalidGguf(c.source, `metadata ${key}: unknown array element type ${elemType}`);
      const n = c.count(`length of array ${key}`, limits.maxArrayLength);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, elemType, key, limits, depth + 1);
      return out;
    }
    default:
      throw invalidGguf(c.source, `metadata ${key}: unknown value type ${type}`);
  }
}

/** Typed accessors over the key/value map; every miss or wrong type names the key. */
export class GgufMetadata {
  constructor(
    readonly entries: ReadonlyMap<string, GgufValue>,
    private readonly source: string,
  ) {}

  has(key: string): boolean {
    return this.entries.has(key);
  }

  string(key: string): string;
  string<F extends string | undefined>(key: string, fallback: F): string | F;
  string(key: string, ...fallback: [string | undefined] | []): string | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return this.missing(key, fallback);
    if (typeof v !== 'string') throw invalidGguf(this.source, `metadata ${key} is not a string`);
    return v;
  }

  /** Any integer or float type, as a finite number. */
  number(key: string): number;
  number<F extends number | undefined>(key: string, fallback: F): number | F;
  number(key: string, ...fallback: [number | undefined] | []): number | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return this.missing(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidGguf(this.source, `metadata ${key} is not a finite number`);
    return v;
  }

  /** A positive integer (a count or size). */
  positiveInt(key: string): number;
  positiveInt<F extends number | undefined>(key: string, fallback: F): number | F;
  positiveInt(key: string, ...fallback: [number | undefined] | []): number | undefined {
    const v = fallback.length ? this.number(key, fallback[0]) : this.number(key);
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v <= 0) throw invalidGguf(this.source, `metadata ${key} = ${v} is not a positive integer`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.entries.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw invalidGguf(this.source, `metadata ${key} is not a bool`);
    return v;
  }

  stringArray(key: string): string[] | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw invalidGguf(this.source, `metadata ${key} is not an array of strings`);
    return v as string[];
  }

  numberArray(key: string): number[] | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw invalidGguf(this.source, `metadata ${key} is not an array of numbers`);
    return v as number[];
  }

  private missing<T>(key: string, fallback: [T] | []): T {
    if (fallback.length) return fallback[0];
    throw invalidGguf(this.source, `metadata ${key} is missing`);
  }
}
