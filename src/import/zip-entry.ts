/**
 * Read one file out of a zip archive (a Python wheel) with Node's zlib: no unzip binary needed.
 *
 * Layout used: End Of Central Directory record (last 22 + comment bytes: signature 0x06054b50, entry
 * count at +10, central directory size at +12 and offset at +16) → central directory entries (0x02014b50:
 * method +10, crc +16, compressed size +20, size +24, name length +28, extra +30, comment +32, local header
 * offset +42, name +46) → local header (0x04034b50: name length +26, extra length +28, data after 30 + both).
 * Stored (0) and deflate (8) entries; zip64 and encryption are refused. The CRC-32 is checked.
 */
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

export class ZipError extends Error {}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE, reflected, polynomial 0xEDB88320) as zip stores it; zlib.crc32 needs Node ≥ 20.15. */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

export function listZip(buf: Buffer): ZipEntry[] {
  const min = Math.max(0, buf.length - 22 - 0xffff);
  let eocd = -1;
  for (let i = buf.length - 22; i >= min; i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipError('not a zip archive (no end-of-central-directory record)');
  const count = buf.readUInt16LE(eocd + 10);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) throw new ZipError('zip64 archives are not supported');
  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) throw new ZipError(`corrupt central directory at entry ${i}`);
    const nameLen = buf.readUInt16LE(p + 28);
    const entry: ZipEntry = {
      name: buf.toString('utf8', p + 46, p + 46 + nameLen),
      method: buf.readUInt16LE(p + 10),
      crc: buf.readUInt32LE(p + 16),
      compressedSize: buf.readUInt32LE(p + 20),
      size: buf.readUInt32LE(p + 24),
      localOffset: buf.readUInt32LE(p + 42),
    };
    if (buf.readUInt16LE(p + 8) & 1) throw new ZipError(`${entry.name} is encrypted`);
    entries.push(entry);
    p += 46 + nameLen + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  return entries;
}

export function readZipEntry(buf: Buffer, e: ZipEntry): Buffer {
  const p = e.localOffset;
  if (p + 30 > buf.length || buf.readUInt32LE(p) !== 0x04034b50) throw new ZipError(`corrupt local header for ${e.name}`);
  const start = p + 30 + buf.readUInt16LE(p + 26) + buf.readUInt16LE(p + 28);
  if (start + e.compressedSize > buf.length) throw new ZipError(`${e.name} runs past the end of the archive`);
  const raw = buf.subarray(start, start + e.compressedSize);
  let data: Buffer;
  if (e.method === 0) data = Buffer.from(raw);
  else if (e.method === 8) data = inflateRawSync(raw, { maxOutputLength: e.size });
  else throw new ZipError(`${e.name} uses compression method ${e.method} (stored and deflate are supported)`);
  if (data.length !== e.size) throw new ZipError(`${e.name} inflated to ${data.length} bytes, expected ${e.size}`);
  if (crc32(data) !== e.crc) throw new ZipError(`${e.name} fails its CRC-32 check`);
  return data;
}

/** The single entry whose name matches, from a zip file on disk. */
export function extractZipEntry(zipPath: string, match: (name: string) => boolean): { name: string; data: Buffer } {
  const buf = readFileSync(zipPath);
  const hits = listZip(buf).filter((e) => match(e.name));
  if (hits.length !== 1) throw new ZipError(`expected one matching entry in ${zipPath}, found ${hits.length}`);
  return { name: hits[0]!.name, data: readZipEntry(buf, hits[0]!) };
}
