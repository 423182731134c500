/**
 * A little-endian cursor over the head of a file, read on demand with bounded growth.
 *
 * The GGUF header (metadata + tensor infos) has no length prefix, so it is parsed as a stream: the cursor
 * pulls more of the file only when a read needs it, never past the end of the file (→ "truncated") and
 * never past `maxBytes` (→ "header too large"), so a corrupt count cannot make it allocate unboundedly.
 */
import { readSync } from 'node:fs';
import { invalidGguf } from './errors.ts';

const CHUNK = 1 << 20;

export class ByteCursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  /** Absolute offset of the next byte to read. */
  pos = 0;

  constructor(
    private readonly fd: number,
    readonly fileSize: number,
    private readonly maxBytes: number,
    readonly source: string,
  ) {}

  /** Make bytes [pos, pos + n) available, or throw naming `what` was being read. */
  private need(n: number, what: string): void {
    const end = this.pos + n;
    if (end <= this.buf.length) return;
    if (end > this.fileSize) {
      throw invalidGguf(this.source, `truncated: ${what} needs bytes ${this.pos}..${end} but the file has ${this.fileSize}`);
    }
    if (end > this.maxBytes) throw invalidGguf(this.source, `header is larger than the ${this.maxBytes}-byte limit (at ${what})`);
    const size = Math.min(this.fileSize, this.maxBytes, Math.max(end, this.buf.length * 2, CHUNK));
    const next = new Uint8Array(size);
    next.set(this.buf);
    let at = this.buf.length;
    while (at < size) {
      const got = readSync(this.fd, next, at, size - at, at);
      if (got === 0) throw invalidGguf(this.source, `file ended at byte ${at} while reading ${what}`);
      at += got;
    }
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  i8(what: string): number {
    this.need(1, what);
    return this.view.getInt8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  i16(what: string): number {
    this.need(2, what);
    const v = this.view.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  i64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }
  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A u64 that must be at most `max` (a count or length), returned as a number. */
  count(what: string, max: number): number {
    const n = this.u64(what);
    if (n > BigInt(max)) throw invalidGguf(this.source, `${what} is ${n}, above the limit of ${max}`);
    return Number(n);
  }

  /** GGUF string: u64 byte length + UTF-8 bytes (not NUL-terminated). */
  string(what: string, maxBytes: number): string {
    const n = this.count(`length of ${what}`, maxBytes);
    this.need(n, what);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (cause) {
      throw invalidGguf(this.source, `${what} is not valid UTF-8`, cause);
    }
  }
}
