/** Test helper: write small (possibly malformed) GGUF files byte by byte. */
type Kv = { key: string; type: number; value: Buffer };

export const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
export const u64 = (n: bigint | number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
export const str = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

export const kvString = (key: string, v: string): Kv => ({ key, type: 8, value: str(v) });
export const kvU32 = (key: string, v: number): Kv => ({ key, type: 4, value: u32(v) });
export const kvF32 = (key: string, v: number): Kv => { const b = Buffer.alloc(4); b.writeFloatLE(v); return { key, type: 6, value: b }; };
export const kvBool = (key: string, v: boolean): Kv => ({ key, type: 7, value: Buffer.from([v ? 1 : 0]) });

export interface TensorSpec {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

export interface GgufSpec {
  magic?: string;
  version?: number;
  tensorCount?: bigint;
  kvCount?: bigint;
  kvs?: Kv[];
  tensors?: TensorSpec[];
  alignment?: number;
  dataBytes?: number;
}

export function ggufBytes(spec: GgufSpec): Buffer {
  const kvs = spec.kvs ?? [];
  const tensors = spec.tensors ?? [];
  const parts: Buffer[] = [
    Buffer.from(spec.magic ?? 'GGUF', 'latin1'),
    u32(spec.version ?? 3),
    u64(spec.tensorCount ?? BigInt(tensors.length)),
    u64(spec.kvCount ?? BigInt(kvs.length)),
  ];
  for (const kv of kvs) parts.push(str(kv.key), u32(kv.type), kv.value);
  for (const t of tensors) parts.push(str(t.name), u32(t.dims.length), ...t.dims.map((d) => u64(d)), u32(t.type), u64(t.offset));
  const head = Buffer.concat(parts);
  const align = spec.alignment ?? 32;
  const padded = Math.ceil(head.length / align) * align;
  return Buffer.concat([head, Buffer.alloc(padded - head.length), Buffer.alloc(spec.dataBytes ?? 0)]);
}
