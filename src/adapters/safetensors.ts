/**
 * Strict safetensors reader.
 *
 * Layout: u64 little-endian N | N bytes of UTF-8 JSON header | data section.
 * Header: `{<name>: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {<string>: <string>}}`,
 * offsets relative to the data section.
 *
 * Everything is checked before a single tensor byte is read: N ≤ 100 MB and inside the file; JSON
 * is an object; each entry has exactly dtype/shape/data_offsets; dtype ∈ {F32, F16, BF16, I32, I64, U8, U16};
 * ∏shape × sizeof(dtype) = end − begin; the tensors tile the data section exactly (sorted by offset:
 * no gap, no overlap, nothing after the last). So a loader can `open()`, validate rank / targets /
 * shapes from `header.tensors`, and only then `read()` the tensors it needs (vLLM's order).
 * F16 / BF16 are widened to float32 on read. Every failure is PatchbayError 400 `invalid_safetensors`.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { PatchbayError } from '../errors.ts';
import { DTYPE_SIZE, bf16ToF32Bits, f16ToF32, isSupportedDtype, type SafetensorsDtype } from './safetensors-dtypes.ts';

export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  tensors: ReadonlyMap<string, TensorInfo>;
  metadata: Readonly<Record<string, string>>;
  /** Absolute offset of the data section (8 + N). */
  dataStart: number;
}

export type TensorData =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array }
  /** Quantised values (RWS patches). */
  | { dtype: 'U8'; shape: number[]; data: Uint8Array }
  | { dtype: 'U16'; shape: number[]; data: Uint16Array };

export function invalidSafetensors(source: string, message: string, cause?: unknown): PatchbayError {
  return new PatchbayError({ status: 400, code: 'invalid_safetensors', message: `invalid safetensors ${source}: ${message}`, cause });
}

/** Validate the 8-byte length prefix against the file size; returns N. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8 || prefix.length < 8) throw invalidSafetensors(source, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw invalidSafetensors(source, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n > BigInt(fileSize - 8)) throw invalidSafetensors(source, `header length ${n} runs past the end of the ${fileSize}-byte file`);
  if (n < 2n) throw invalidSafetensors(source, `header length ${n} is too short for a JSON object`);
  return Number(n);
}

/** Parse and validate the JSON header (the N bytes after the prefix); `dataLength` = file size − 8 − N. */
export function parseHeader(json: Uint8Array, dataLength: number, source: string): SafetensorsHeader {
  const dataStart = 8 + json.length;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch (e) {
    throw invalidSafetensors(source, 'header is not valid UTF-8', e);
  }
  if (!text.startsWith('{')) throw invalidSafetensors(source, 'header does not start with "{"');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalidSafetensors(source, `header is not valid JSON (${(e as Error).message})`, e);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalidSafetensors(source, 'header is not a JSON object');

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(raw)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(entry, source);
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataLength, source));
  }
  checkTiling([...tensors.values()], dataLength, source);
  return { tensors, metadata, dataStart };
}

function parseMetadata(entry: unknown, source: string): Record<string, string> {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalidSafetensors(source, '__metadata__ is not an object');
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') throw invalidSafetensors(source, `__metadata__.${k} is ${JSON.stringify(v)}, not a string`);
  }
  return { ...(entry as Record<string, string>) };
}

function parseEntry(name: string, entry: unknown, dataLength: number, source: string): TensorInfo {
  const where = `tensor ${JSON.stringify(name)}`;
  if (name.length === 0) throw invalidSafetensors(source, 'a tensor has an empty name');
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalidSafetensors(source, `${where} is not an object`);
  const keys = Object.keys(entry).sort().join(',');
  if (keys !== 'data_offsets,dtype,shape') throw invalidSafetensors(source, `${where} has keys {${keys}}, expected {data_offsets, dtype, shape}`);
  const { dtype, shape, data_offsets: offsets } = entry as { dtype: unknown; shape: unknown; data_offsets: unknown };
  if (!isSupportedDtype(dtype)) {
    throw invalidSafetensors(source, `${where} has unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) throw invalidSafetensors(source, `${where} has shape ${JSON.stringify(shape)}, expected an array of non-negative integers`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw invalidSafetensors(source, `${where} has data_offsets ${JSON.stringify(offsets)}, expected [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw invalidSafetensors(source, `${where} has data_offsets [${begin}, ${end}] with begin > end`);
  if (end > dataLength) throw invalidSafetensors(source, `${where} has data_offsets [${begin}, ${end}] past the ${dataLength}-byte data section`);
  const elements = (shape as number[]).reduce((p, d) => p * d, 1);
  const bytes = elements * DTYPE_SIZE[dtype];
  if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
    throw invalidSafetensors(source, `${where}: ${dtype} ${JSON.stringify(shape)} needs ${bytes} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Sorted by offset, the tensors must cover [0, dataLength) with no gap and no overlap. */
function checkTiling(infos: TensorInfo[], dataLength: number, source: string): void {
  const sorted = infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.begin < cursor) throw invalidSafetensors(source, `tensor ${JSON.stringify(t.name)} [${t.begin}, ${t.end}] overlaps tensor ${JSON.stringify(prev!.name)} [${prev!.begin}, ${prev!.end}]`);
    if (t.begin > cursor) throw invalidSafetensors(source, `data bytes [${cursor}, ${t.begin}) belong to no tensor`);
    cursor = t.end;
    prev = t;
  }
  if (cursor !== dataLength) throw invalidSafetensors(source, `data bytes [${cursor}, ${dataLength}) after the last tensor belong to no tensor`);
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decode one tensor's bytes (exactly `end − begin` of them), widening F16/BF16 to float32. */
export function decodeTensor(info: TensorInfo, bytes: Uint8Array): TensorData {
  const n = info.shape.reduce((p, d) => p * d, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (info.dtype) {
    case 'F32': {
      // new Uint8Array(view) copies into a fresh, aligned buffer (Buffer#slice would not copy).
      if (LITTLE_ENDIAN_HOST) return { dtype: 'F32', shape: info.shape, data: new Float32Array(new Uint8Array(bytes).buffer) };
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return { dtype: 'F32', shape: info.shape, data: out };
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      return { dtype: 'F32', shape: info.shape, data: out };
    }
    case 'BF16': {
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = bf16ToF32Bits(view.getUint16(i * 2, true));
      return { dtype: 'F32', shape: info.shape, data: new Float32Array(bits.buffer) };
    }
    case 'I32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
      return { dtype: 'I32', shape: info.shape, data: out };
    }
    case 'I64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getBigInt64(i * 8, true);
      return { dtype: 'I64', shape: info.shape, data: out };
    }
    case 'U8':
      return { dtype: 'U8', shape: info.shape, data: new Uint8Array(bytes) };
    case 'U16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
      return { dtype: 'U16', shape: info.shape, data: out };
    }
  }
}

/** An in-memory safetensors buffer, fully validated. */
export function decodeSafetensors(buf: Uint8Array, source = '<buffer>'): { header: SafetensorsHeader; tensor(name: string): TensorData } {
  const n = parseHeaderLength(buf, buf.length, source);
  const header = parseHeader(buf.subarray(8, 8 + n), buf.length - 8 - n, source);
  return {
    header,
    tensor(name) {
      const info = header.tensors.get(name);
      if (!info) throw invalidSafetensors(source, `no tensor ${JSON.stringify(name)}`);
      return decodeTensor(info, buf.subarray(header.dataStart + info.begin, header.dataStart + info.end));
    },
  };
}

/**
 * A safetensors file: `open` reads and validates only the header, and `read` then fetches one tensor at a
 * time (header-first: a loader validates names and shapes before any tensor byte is read). With
 * `wholeUpTo`, a file of at most that many bytes is instead read whole in one read (one thread-pool round
 * trip instead of 2 + one per tensor) and its handle closed at once; the header is validated the same way,
 * and `read` decodes from memory — F32 tensors as views of that buffer, not copies, when `view` is asked.
 */
export class SafetensorsFile {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly whole: Uint8Array | undefined,
  ) {
    // Read whole: the descriptor is not needed any more (a read-only close has nothing to report).
    if (whole) this.closing = handle.close().catch(() => undefined);
  }

  static async open(path: string, opts: { wholeUpTo?: number } = {}): Promise<SafetensorsFile> {
    const handle = await open(path, 'r');
    try {
      const st = await handle.stat();
      // open(2) succeeds on a directory; say "missing" the way a missing file does.
      if (!st.isFile()) throw Object.assign(new Error(`${path} is not a regular file`), { code: 'EISDIR' });
      const size = st.size;
      if (opts.wholeUpTo !== undefined && size <= opts.wholeUpTo) {
        const buf = await readExactly(handle, 0, size);
        const n = parseHeaderLength(buf, size, path);
        return new SafetensorsFile(handle, path, parseHeader(buf.subarray(8, 8 + n), size - 8 - n, path), buf);
      }
      const prefix = await readExactly(handle, 0, Math.min(8, size));
      const n = parseHeaderLength(prefix, size, path);
      const json = await readExactly(handle, 8, n);
      const header = parseHeader(json, size - 8 - n, path);
      return new SafetensorsFile(handle, path, header, undefined);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /**
   * One tensor, decoded. `view: true` lets an F32 tensor of a file read whole alias the file's buffer
   * (no copy; the caller must not write to it) — loaders that compile factors from it right away use it.
   */
  async read(name: string, opts: { view?: boolean } = {}): Promise<TensorData> {
    const info = this.header.tensors.get(name);
    if (!info) throw invalidSafetensors(this.path, `no tensor ${JSON.stringify(name)}`);
    const start = this.header.dataStart + info.begin;
    if (this.whole) {
      const bytes = this.whole.subarray(start, this.header.dataStart + info.end);
      return opts.view ? viewTensor(info, bytes) : decodeTensor(info, bytes);
    }
    return decodeTensor(info, await readExactly(this.handle, start, info.end - info.begin));
  }

  async close(): Promise<void> {
    this.closing ??= this.handle.close();
    await this.closing;
  }
}

/** An F32 tensor as a Float32Array over `bytes` itself when the host is little-endian and it is aligned; else decoded (copied). */
function viewTensor(info: TensorInfo, bytes: Uint8Array): TensorData {
  if (info.dtype === 'F32' && LITTLE_ENDIAN_HOST && bytes.byteOffset % 4 === 0) {
    return { dtype: 'F32', shape: info.shape, data: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4) };
  }
  return decodeTensor(info, bytes);
}

async function readExactly(handle: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
  return buf;
}
