import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { crc32, listZip, readZipEntry, ZipError } from '../../src/import/zip-entry.ts';

/** A minimal zip writer (local headers, central directory, end record), the layout pip's wheels use. */
function zip(files: Array<{ name: string; data: Buffer; deflate: boolean }>): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const body = f.deflate ? deflateRawSync(f.data) : f.data;
    const name = Buffer.from(f.name);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(f.deflate ? 8 : 0, 8);
    h.writeUInt32LE(crc32(f.data), 14);
    h.writeUInt32LE(body.length, 18);
    h.writeUInt32LE(f.data.length, 22);
    h.writeUInt16LE(name.length, 26);
    locals.push(h, name, body);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(f.deflate ? 8 : 0, 10);
    c.writeUInt32LE(crc32(f.data), 16);
    c.writeUInt32LE(body.length, 20);
    c.writeUInt32LE(f.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt32LE(offset, 42);
    central.push(c, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

test('zip reader: stored and deflated entries come back byte-exact; corruption is reported', () => {
  const big = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7919) % 251));
  const archive = zip([
    { name: 'pkg/__init__.py', data: Buffer.from('print(1)\n'), deflate: false },
    { name: 'pkg/model.gguf', data: big, deflate: true },
  ]);
  const entries = listZip(archive);
  assert.deepEqual(entries.map((e) => e.name), ['pkg/__init__.py', 'pkg/model.gguf']);
  assert.equal(readZipEntry(archive, entries[0]!).toString(), 'print(1)\n');
  assert.ok(readZipEntry(archive, entries[1]!).equals(big));
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926); // the CRC-32 check value

  const flipped = Buffer.from(archive);
  flipped[30 + 'pkg/__init__.py'.length] ^= 1; // first byte of the stored entry
  assert.throws(() => readZipEntry(flipped, listZip(flipped)[0]!), /fails its CRC-32 check/);
  assert.throws(() => listZip(Buffer.from('not a zip at all, just some text padding it out')), ZipError);
});
