import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgufFile } from '../../src/runtime/gguf/index.ts';
import { PatchbayError } from '../../src/errors.ts';
import { importGguf } from '../../src/import/import-gguf.ts';
import { GGUF_FIXTURE } from './fixture.ts';
import { ggufBytes, kvString, kvU32, str, u32, u64, type GgufSpec } from './gguf-writer.ts';

let dir: string;
before(async () => (dir = await mkdtemp(join(tmpdir(), 'patchbay-gguf-bad-'))));
after(async () => rm(dir, { recursive: true, force: true }));

let n = 0;
async function write(bytes: Uint8Array): Promise<string> {
  const p = join(dir, `f${n++}.gguf`);
  await writeFile(p, bytes);
  return p;
}

function rejects(path: string, pattern: RegExp): void {
  assert.throws(
    () => GgufFile.open(path).close(),
    (e: unknown) => e instanceof PatchbayError && e.code === 'invalid_gguf' && e.status === 400 && pattern.test(e.message) && e.message.includes(path),
  );
}

const f32 = (name: string, dims: number[], offset: number) => ({ name, dims, type: 0, offset });
const ok: GgufSpec = { kvs: [kvString('general.architecture', 'llama')], tensors: [f32('a', [8], 0), f32('b', [4, 2], 32)], dataBytes: 64 };

test('a well-formed hand-written file opens (the malformed variants below differ in one thing)', async () => {
  const file = GgufFile.open(await write(ggufBytes(ok)));
  assert.deepEqual([...file.tensors.keys()], ['a', 'b']);
  assert.equal(file.tensor('b').byteLength, 32);
  file.close();
});

test('bad magic, unsupported version, empty file', async () => {
  rejects(await write(ggufBytes({ ...ok, magic: 'GGML' })), /bad magic "GGML".*not a GGUF file/);
  rejects(await write(ggufBytes({ ...ok, version: 1 })), /unsupported GGUF version 1/);
  rejects(await write(new Uint8Array(0)), /too short for the GGUF magic/);
  rejects(await write(new TextEncoder().encode('{"not":"gguf"}')), /bad magic/);
});

test('truncated files: inside the header, the tensor infos, and the tensor data', async () => {
  const full = ggufBytes(ok);
  rejects(await write(full.subarray(0, 10)), /truncated: tensor count needs bytes/);
  rejects(await write(full.subarray(0, 40)), /truncated/);
  const fixture = await readFile(GGUF_FIXTURE);
  rejects(await write(fixture.subarray(0, 5000)), /truncated: .*needs bytes/);
  rejects(await write(fixture.subarray(0, fixture.length - 100)), /lies outside the \d+-byte file/);
});

test('absurd counts and lengths are refused before anything is allocated', async () => {
  rejects(await write(ggufBytes({ ...ok, tensorCount: 1n << 40n })), /tensor count is 1099511627776, above the limit/);
  rejects(await write(ggufBytes({ ...ok, kvCount: 1n << 62n })), /key\/value count is .* above the limit/);
  const longString = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), u64(1n << 50n), Buffer.alloc(16)]);
  rejects(await write(longString), /length of metadata key #0 is 1125899906842624, above the limit/);
  const hugeArray = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), str('x'), u32(9), u32(4), u64(1n << 40n)]);
  rejects(await write(hugeArray), /length of array x is 1099511627776, above the limit/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [1 << 30, 1 << 30, 1 << 30], 0)] })), /more than 2\^53 elements/);
});

test('offsets: outside the file, unaligned, overlapping; bad dims, types and values', async () => {
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [8], 1 << 20)] })), /tensor a .* lies outside the/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [8], 4)] })), /offset 4 is not a multiple of the alignment 32/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [16], 0), f32('b', [8], 32)] })), /tensors a and b overlap/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [8], 0), f32('a', [8], 32)] })), /tensor a appears twice/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [0], 0)] })), /dimension 0 = 0/);
  rejects(await write(ggufBytes({ ...ok, tensors: [f32('a', [1, 1, 1, 1, 1], 0)] })), /has 5 dimensions/);
  rejects(await write(ggufBytes({ ...ok, tensors: [{ name: 'q', dims: [48], type: 8, offset: 0 }] })), /Q8_0.*rows of 48, not a multiple of its 32-weight blocks/);
  rejects(await write(ggufBytes({ ...ok, kvs: [{ key: 'k', type: 99, value: Buffer.alloc(0) }] })), /metadata k: unknown value type 99/);
  rejects(await write(ggufBytes({ ...ok, kvs: [{ key: 'k', type: 7, value: Buffer.from([7]) }] })), /bool byte is 7/);
  rejects(await write(ggufBytes({ ...ok, kvs: [kvU32('general.alignment', 48)] })), /general.alignment = 48 is not a power of two/);
  rejects(await write(ggufBytes({ ...ok, kvs: [kvString('k', 'a'), kvString('k', 'b')] })), /metadata key k appears twice/);
});

test('the importer refuses what it cannot build, names it, and leaves the output directory untouched', async () => {
  const out = join(dir, 'model');
  await mkdir(out);
  await writeFile(join(out, 'marker'), 'previous model');
  const attempt = async (bytes: Uint8Array, pattern: RegExp) => {
    await assert.rejects(importGguf(await write(bytes), out, 'f32'), (e: unknown) => e instanceof PatchbayError && pattern.test(e.message));
    assert.equal(await readFile(join(out, 'marker'), 'utf8'), 'previous model');
    assert.deepEqual(await readdir(dir).then((f) => f.filter((x) => x.includes('importing'))), []);
  };
  await attempt(ggufBytes({ ...ok, kvs: [kvString('general.architecture', 'gpt2')] }), /architecture "gpt2" is not supported/);
  await attempt(ggufBytes({ ...ok, kvs: [] }), /metadata general.architecture is missing/);
  // A Q5_K tensor (type 13) is readable as bytes but has no dequantizer.
  const q5 = ggufBytes({ kvs: [kvString('general.architecture', 'llama')], tensors: [{ name: 'x', dims: [256], type: 13, offset: 0 }], dataBytes: 256 });
  const file = GgufFile.open(await write(q5));
  assert.equal(file.tensor('x').typeName, 'Q5_K');
  assert.throws(() => file.readTensorBytes(file.tensor('x')), /type Q5_K, which this importer cannot read/);
  file.close();
});
