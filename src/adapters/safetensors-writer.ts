/**
 * safetensors writer (tests, the S²FT converter). Tensors are laid out in the order given; the JSON
 * header is space-padded to a multiple of 8 bytes, as the reference implementation does, so data
 * starts 8-byte aligned. F16 / BF16 targets are narrowed from float32 (round to nearest even).
 */
import { writeFile } from 'node:fs/promises';
import { DTYPE_SIZE, f32ToBf16, f32ToF16, type SafetensorsDtype } from './safetensors-dtypes.ts';

export interface TensorToWrite {
  dtype: SafetensorsDtype;
  shape: readonly number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;
}

export function encodeSafetensors(tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((p, d) => p * d, 1);
    if (n !== t.data.length) throw new Error(`tensor ${name}: shape [${t.shape.join(', ')}] holds ${n} elements, data has ${t.data.length}`);
    const bytes = tensorBytes(t, n);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + jsonBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  out.set(jsonBytes, 8);
  let at = 8 + jsonBytes.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function writeSafetensors(path: string, tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): Promise<void> {
  await writeFile(path, encodeSafetensors(tensors, metadata));
}

function tensorBytes(t: TensorToWrite, n: number): Uint8Array {
  const out = new Uint8Array(n * DTYPE_SIZE[t.dtype]);
  const v = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    const x = t.data[i]!;
    switch (t.dtype) {
      case 'F32': v.setFloat32(i * 4, Number(x), true); break;
      case 'F16': v.setUint16(i * 2, f32ToF16(Number(x)), true); break;
      case 'BF16': v.setUint16(i * 2, f32ToBf16(Number(x)), true); break;
      case 'I32': v.setInt32(i * 4, Number(x), true); break;
      case 'I64': v.setBigInt64(i * 8, BigInt(x), true); break;
      case 'U8': v.setUint8(i, Number(x)); break;
      case 'U16': v.setUint16(i * 2, Number(x), true); break;
    }
  }
  return out;
}
