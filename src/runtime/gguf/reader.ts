/**
 * Bounded, validated GGUF reader (spec versions 2 and 3, little-endian).
 *
 * Layout: "GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv_count × (string key, u32 type, value)
 *         | tensor_count × (string name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type,
 *         u64 offset) | padding to `general.alignment` (default 32) | tensor data.
 *
 * Everything is checked before a tensor byte is read: counts and string lengths against limits; dims ≥ 1,
 * ≤ 4 of them, element count ≤ 2^53; the innermost dim a multiple of the type's block size; offsets
 * aligned; byte size = elements / block × block bytes; every tensor inside the file; no two tensors
 * overlapping; names unique. Tensor bytes are then read one tensor at a time with `readTensorBytes`.
 * Every failure is PatchbayError 400 `invalid_gguf` naming the file and the problem.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ByteCursor } from './byte-cursor.ts';
import { invalidGguf } from './errors.ts';
import { ggmlType, ggmlTypeName, type GgmlType } from './ggml-types.ts';
import { DEFAULT_METADATA_LIMITS, GgufMetadata, readValue, type GgufValue, type MetadataLimits } from './metadata.ts';

export interface GgufTensorInfo {
  name: string;
  /** GGML order: dims[0] is the innermost (contiguous) dimension. A [rows, cols] matrix is [cols, rows]. */
  dims: number[];
  typeId: number;
  /** Undefined when the type cannot be dequantized here (the name is in `typeName`). */
  type: GgmlType | undefined;
  typeName: string;
  elements: number;
  /** Offset inside the data section. */
  offset: number;
  /** Bytes in the file (0 when the type is unknown and its size cannot be computed). */
  byteLength: number;
}

export interface GgufLimits extends MetadataLimits {
  maxHeaderBytes: number;
  maxTensors: number;
  maxKv: number;
}

export const DEFAULT_LIMITS: GgufLimits = {
  ...DEFAULT_METADATA_LIMITS,
  maxHeaderBytes: 512 << 20,
  maxTensors: 1 << 16,
  maxKv: 1 << 16,
};

const MAGIC = 0x46554747; // "GGUF" read as little-endian u32
const MAX_DIMS = 4;
const MAX_NAME_BYTES = 256;

export class GgufFile {
  private constructor(
    private fd: number | undefined,
    readonly source: string,
    readonly version: number,
    readonly fileSize: number,
    readonly metadata: GgufMetadata,
    readonly tensors: ReadonlyMap<string, GgufTensorInfo>,
    readonly alignment: number,
    /** Absolute offset of the data section. */
    readonly dataStart: number,
  ) {}

  static open(path: string, limits: GgufLimits = DEFAULT_LIMITS): GgufFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw invalidGguf(path, `cannot open (${(cause as Error).message})`, cause);
    }
    try {
      return GgufFile.parse(fd, path, limits);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private static parse(fd: number, source: string, limits: GgufLimits): GgufFile {
    const fileSize = fstatSync(fd).size;
    const c = new ByteCursor(fd, fileSize, limits.maxHeaderBytes, source);
    if (fileSize < 4) throw invalidGguf(source, `file is ${fileSize} bytes, too short for the GGUF magic`);
    const magic = c.u32('magic');
    if (magic !== MAGIC) {
      const text = Buffer.from(new Uint32Array([magic]).buffer).toString('latin1');
      throw invalidGguf(source, `bad magic ${JSON.stringify(text)} (expected "GGUF"): not a GGUF file`);
    }
    const version = c.u32('version');
    if (version !== 2 && version !== 3) throw invalidGguf(source, `unsupported GGUF version ${version} (this reader reads 2 and 3)`);
    const tensorCount = c.count('tensor count', limits.maxTensors);
    const kvCount = c.count('metadata key/value count', limits.maxKv);

    const entries = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = c.string(`metadata key #${i}`, MAX_NAME_BYTES);
      if (entries.has(key)) throw invalidGguf(source, `metadata key ${key} appears twice`);
      const type = c.u32(`type of metadata ${key}`);
      entries.set(key, readValue(c, type, key, limits));
    }
    const metadata = new GgufMetadata(entries, source);
    const alignment = metadata.number('general.alignment', 32);
    if (!Number.isInteger(alignment) || alignment <= 0 || alignment > 1 << 20 || (alignment & (alignment - 1)) !== 0) {
      throw invalidGguf(source, `general.alignment = ${alignment} is not a power of two up to 1 MiB`);
    }

    const tensors = new Map<string, GgufTensorInfo>();
    for (let i = 0; i < tensorCount; i++) {
      const info = readTensorInfo(c, i, alignment);
      if (tensors.has(info.name)) throw invalidGguf(source, `tensor ${info.name} appears twice`);
      tensors.set(info.name, info);
    }
    const dataStart = Math.ceil(c.pos / alignment) * alignment;
    checkLayout([...tensors.values()], dataStart, fileSize, source);
    return new GgufFile(fd, source, version, fileSize, metadata, tensors, alignment, dataStart);
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw invalidGguf(this.source, `tensor ${name} is missing`);
    return t;
  }

  /** The raw bytes of one tensor (bounds were checked at open). */
  readTensorBytes(info: GgufTensorInfo): Uint8Array {
    if (this.fd === undefined) throw invalidGguf(this.source, 'file is closed');
    if (!info.type) throw invalidGguf(this.source, `tensor ${info.name} has type ${info.typeName}, which this importer cannot read`);
    const out = new Uint8Array(info.byteLength);
    let at = 0;
    while (at < out.length) {
      const got = readSync(this.fd, out, at, out.length - at, this.dataStart + info.offset + at);
      if (got === 0) throw invalidGguf(this.source, `file ended inside tensor ${info.name}`);
      at += got;
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function readTensorInfo(c: ByteCursor, i: number, alignment: number): GgufTensorInfo {
  const name = c.string(`name of tensor #${i}`, MAX_NAME_BYTES);
  const nDims = c.u32(`dimension count of tensor ${name}`);
  if (nDims < 1 || nDims > MAX_DIMS) throw invalidGguf(c.source, `tensor ${name} has ${nDims} dimensions (1..${MAX_DIMS} allowed)`);
  const dims: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    const n = c.count(`dimension ${d} of tensor ${name}`, Number.MAX_SAFE_INTEGER);
    if (n < 1) throw invalidGguf(c.source, `tensor ${name} has dimension ${d} = 0`);
    elements *= n;
    if (elements > Number.MAX_SAFE_INTEGER) throw invalidGguf(c.source, `tensor ${name} has more than 2^53 elements`);
    dims.push(n);
  }
  const typeId = c.u32(`type of tensor ${name}`);
  const offset = c.count(`offset of tensor ${name}`, Number.MAX_SAFE_INTEGER);
  if (offset % alignment !== 0) throw invalidGguf(c.source, `tensor ${name} offset ${offset} is not a multiple of the alignment ${alignment}`);
  const type = ggmlType(typeId);
  let byteLength = 0;
  if (type) {
    if (dims[0]! % type.blockSize !== 0) {
      throw invalidGguf(c.source, `tensor ${name} (${type.name}) has rows of ${dims[0]}, not a multiple of its ${type.blockSize}-weight blocks`);
    }
    byteLength = (elements / type.blockSize) * type.typeSize;
  }
  return { name, dims, typeId, type, typeName: ggmlTypeName(typeId), elements, offset, byteLength };
}

/** Every tensor lies inside the file and no two overlap. */
function checkLayout(tensors: GgufTensorInfo[], dataStart: number, fileSize: number, source: string): void {
  if (tensors.length > 0 && dataStart > fileSize) throw invalidGguf(source, `truncated: data section would start at ${dataStart}, past the end (${fileSize})`);
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  let prevEnd = 0;
  let prevName = '';
  for (const t of sorted) {
    const end = dataStart + t.offset + t.byteLength;
    if (end > fileSize) {
      throw invalidGguf(source, `tensor ${t.name} (bytes ${dataStart + t.offset}..${end}) lies outside the ${fileSize}-byte file`);
    }
    if (t.offset < prevEnd) throw invalidGguf(source, `tensors ${prevName} and ${t.name} overlap`);
    prevEnd = t.offset + t.byteLength;
    prevName = t.name;
  }
}
