/**
 * The durable, append-only edit log (`<PATCHBAY_DATA_DIR>/edits/edits.log`).
 *
 * Record framing: [magic "PBE1" u32][payload length u32][crc32(payload) u32][payload], little-endian.
 * Payload: [json length u32][json][zero padding to a multiple of 8][float64 data]. The JSON says what the
 * record is; for an edit, the data is each layer part's keys (u·d_k) then values (u·d_v), exact float64, so
 * a replay feeds the recursion the very same numbers. Records:
 *   {type: "init", fingerprint}     first record: which model/layers/λ/μ/statistics the log belongs to
 *   {type: "edit", seq, parts: [{layer, u}], meta}
 *   {type: "rollback", toSeq}
 * `append` returns only after fsync, so an acknowledged record survives a crash (SIGKILL, power loss with an
 * honest disk). A crash mid-write leaves at most one torn record at the tail; `open` detects it (short
 * read or CRC mismatch) and truncates it away — it was never acknowledged.
 *
 * `open` checks every record but keeps only an index (type, seq, offset: tens of bytes per edit); an edit's
 * float data (u·(d_k + d_v)·8 bytes per layer, 20 KB for one tiny-gpt2 key, far more on SmolLM2) is read back
 * by `readEdit` only when a replay needs it, so neither a restart nor a rollback holds the whole log in memory.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import type { LayerEdit } from './edit-state.ts';

const MAGIC = 0x31454250; // "PBE1"

export interface EditMeta {
  prompt?: string;
  target?: string;
  subject?: string;
  source: 'prompt' | 'raw';
}

export type LogRecord =
  | { type: 'init'; fingerprint: string }
  | { type: 'edit'; seq: number; parts: LayerEdit[]; meta: EditMeta }
  | { type: 'rollback'; toSeq: number };

export function encodeRecord(rec: LogRecord): Buffer {
  const head =
    rec.type === 'edit'
      ? { type: 'edit', seq: rec.seq, parts: rec.parts.map((p) => ({ layer: p.layer, u: p.u })), meta: rec.meta }
      : rec;
  const json = Buffer.from(JSON.stringify(head), 'utf8');
  const pad = (8 - ((4 + json.length) % 8)) % 8;
  const floats = rec.type === 'edit' ? rec.parts.reduce((n, p) => n + p.keys.length + p.values.length, 0) : 0;
  const payload = Buffer.alloc(4 + json.length + pad + floats * 8);
  payload.writeUInt32LE(json.length, 0);
  json.copy(payload, 4);
  let off = 4 + json.length + pad;
  if (rec.type === 'edit') {
    for (const p of rec.parts) {
      for (const arr of [p.keys, p.values]) {
        Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).copy(payload, off);
        off += arr.byteLength;
      }
    }
  }
  const frame = Buffer.alloc(12);
  frame.writeUInt32LE(MAGIC, 0);
  frame.writeUInt32LE(payload.length, 4);
  frame.writeUInt32LE(crc32(payload), 8);
  return Buffer.concat([frame, payload]);
}

type RecordHead =
  | { type: 'init'; fingerprint: string }
  | { type: 'rollback'; toSeq: number }
  | { type: 'edit'; seq: number; parts: { layer: string; u: number }[]; meta: EditMeta };

/** Where a record lies in the log (frame start, frame + payload length) and what its head says, without float data. */
export type LogEntry = ({ type: 'init'; fingerprint: string } | { type: 'rollback'; toSeq: number } | { type: 'edit'; seq: number }) & {
  offset: number;
  length: number;
};

function decodeHead(payload: Buffer): RecordHead {
  const jsonLen = payload.readUInt32LE(0);
  return JSON.parse(payload.subarray(4, 4 + jsonLen).toString('utf8')) as RecordHead;
}

/** Decodes one payload; `dims` gives each layer's (d_k, d_v) to cut the float data. */
function decodePayload(payload: Buffer, dims: LayerDims): LogRecord {
  const jsonLen = payload.readUInt32LE(0);
  const head = decodeHead(payload);
  if (head.type !== 'edit') return head;
  const pad = (8 - ((4 + jsonLen) % 8)) % 8;
  let off = 4 + jsonLen + pad;
  // Copy into an aligned buffer: Float64Array needs 8-byte alignment of the underlying offset.
  const data = new Float64Array(new Uint8Array(payload.subarray(off)).buffer);
  off = 0;
  const parts: LayerEdit[] = head.parts.map(({ layer, u }) => {
    const d = dims(layer);
    if (!d) throw new Error(`edit log names layer ${layer}, which is not edited by this configuration`);
    const keys = data.slice(off, off + u * d.dK);
    off += u * d.dK;
    const values = data.slice(off, off + u * d.dV);
    off += u * d.dV;
    return { layer, u, keys, values };
  });
  return { type: 'edit', seq: head.seq, parts, meta: head.meta };
}

export type LayerDims = (layer: string) => { dK: number; dV: number } | undefined;

/** Reads `size` bytes at `position` (fewer at the end of the file). */
function readAt(fd: number, size: number, position: number): Buffer {
  const buf = Buffer.alloc(size);
  let got = 0;
  while (got < size) {
    const n = readSync(fd, buf, got, size - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** The checked payload of the record framed at `off`, or undefined if it is torn or corrupt (or past `size`). */
function readPayload(fd: number, off: number, size: number): Buffer | undefined {
  if (off + 12 > size) return undefined;
  const frame = readAt(fd, 12, off);
  if (frame.length < 12 || frame.readUInt32LE(0) !== MAGIC) return undefined;
  const len = frame.readUInt32LE(4);
  if (off + 12 + len > size) return undefined;
  const payload = readAt(fd, len, off + 12);
  if (payload.length < len || crc32(payload) !== frame.readUInt32LE(8)) return undefined;
  return payload;
}

/**
 * Every complete record from the start of the file, one at a time (memory: one record), as an index;
 * `end` is where the first torn or corrupt record begins. Edits naming a layer `dims` does not know are refused.
 */
function scanRecords(fd: number, size: number, dims: LayerDims): { entries: LogEntry[]; end: number } {
  const entries: LogEntry[] = [];
  let off = 0;
  for (let payload = readPayload(fd, off, size); payload !== undefined; payload = readPayload(fd, off, size)) {
    const head = decodeHead(payload);
    const length = 12 + payload.length;
    if (head.type === 'edit') {
      const unknown = head.parts.find((p) => !dims(p.layer));
      if (unknown) throw new Error(`edit log names layer ${unknown.layer}, which is not edited by this configuration`);
      entries.push({ type: 'edit', seq: head.seq, offset: off, length });
    } else entries.push({ ...head, offset: off, length });
    off += length;
  }
  return { entries, end: off };
}

export class EditLog {
  private constructor(
    private fd: number | undefined,
    readonly path: string,
    private size: number,
    private readonly dims: LayerDims,
  ) {}

  /**
   * Opens (creating if needed) the log and checks every complete record, returning their index. A torn tail is
   * cut off the file. `dims` maps a layer to its (d_k, d_v).
   */
  static open(path: string, dims: LayerDims): { log: EditLog; entries: LogEntry[]; truncatedBytes: number } {
    mkdirSync(dirname(path), { recursive: true });
    const created = !existsSync(path);
    const fd = openSync(path, 'a+');
    if (created) fsyncDir(dirname(path));
    const size = fstatSync(fd).size;
    const { entries, end } = scanRecords(fd, size, dims);
    if (end < size) {
      ftruncateSync(fd, end);
      fsyncSync(fd);
    }
    return { log: new EditLog(fd, path, end, dims), entries, truncatedBytes: size - end };
  }

  /** The full record (keys and values included) at an index entry from `open` or `append`. */
  read(entry: Pick<LogEntry, 'offset'>): LogRecord {
    if (this.fd === undefined) throw new Error('the edit log is closed');
    const payload = readPayload(this.fd, entry.offset, this.size);
    if (!payload) throw new Error(`${this.path}: no intact record at byte ${entry.offset}`);
    return decodePayload(payload, this.dims);
  }

  get bytes(): number {
    return this.size;
  }

  /** Writes the record and fsyncs; returns once it is on disk, with its place and the time spent in each (ms). */
  append(rec: LogRecord): { offset: number; length: number; writeMs: number; fsyncMs: number } {
    if (this.fd === undefined) throw new Error('the edit log is closed');
    const t0 = performance.now();
    const bytes = encodeRecord(rec);
    let t1 = t0;
    try {
      let done = 0;
      while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done);
      t1 = performance.now();
      fsyncSync(this.fd);
    } catch (err) {
      // Leave no partial record behind (a full disk, say): the next append must start on a record boundary.
      ftruncateSync(this.fd, this.size);
      throw err;
    }
    const offset = this.size;
    this.size += bytes.length;
    return { offset, length: bytes.length, writeMs: t1 - t0, fsyncMs: performance.now() - t1 };
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Makes a new directory entry durable (the file's own fsync does not cover its name). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
