import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PatchbayError } from '../../src/errors.ts';
import { SafetensorsFile, decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { encodeSafetensors } from '../../src/adapters/safetensors-writer.ts';
import { f16ToF32, f32ToF16 } from '../../src/adapters/safetensors-dtypes.ts';

/** Raw file from a header value (object or string) and data length, with an optional forced N. */
function raw(header: unknown, dataBytes: number, forcedN?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, forcedN ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'I32', shape: [1], data_offsets: [8, 12] } };

test('round trip: F32, F16, BF16 (widened to F32), I32, I64, metadata, empty tensor', async () => {
  const f = new Float32Array([1.5, -2.25, 0, 65504, 1e-7, -0]);
  const bytes = encodeSafetensors(
    {
      f32: { dtype: 'F32', shape: [2, 3], data: f },
      f16: { dtype: 'F16', shape: [6], data: f },
      bf16: { dtype: 'BF16', shape: [3, 2], data: new Float32Array([1, -3.5, 0.15625, 256, -0.5, 2]) },
      i32: { dtype: 'I32', shape: [3], data: new Int32Array([0, -7, 2 ** 31 - 1]) },
      i64: { dtype: 'I64', shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) },
      empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    },
    { format: 'pt', note: 'x' },
  );
  const st = decodeSafetensors(bytes);
  // A pooled Node Buffer (non-zero byteOffset into a shared ArrayBuffer) decodes the same.
  assert.deepEqual(decodeSafetensors(Buffer.from(bytes)).tensor('f32').data, f);
  assert.deepEqual(st.header.metadata, { format: 'pt', note: 'x' });
  assert.equal(st.header.dataStart % 8, 0);
  assert.deepEqual(st.tensor('f32'), { dtype: 'F32', shape: [2, 3], data: f });
  const h = st.tensor('f16');
  assert.equal(h.dtype, 'F32');
  assert.deepEqual([...h.data].slice(0, 4), [1.5, -2.25, 0, 65504]);
  assert.ok(Math.abs(Number(h.data[4]) - 1e-7) < 2 ** -25, 'f16 subnormal');
  assert.deepEqual([...st.tensor('bf16').data], [1, -3.5, 0.15625, 256, -0.5, 2]);
  assert.deepEqual(st.tensor('i32'), { dtype: 'I32', shape: [3], data: new Int32Array([0, -7, 2 ** 31 - 1]) });
  assert.deepEqual(st.tensor('i64').data, new BigInt64Array([-1n, 2n ** 40n]));
  assert.equal(st.tensor('empty').data.length, 0);

  const dir = await mkdtemp(join(tmpdir(), 'st-'));
  await writeFile(join(dir, 'x.safetensors'), bytes);
  const file = await SafetensorsFile.open(join(dir, 'x.safetensors'));
  try {
    assert.deepEqual(file.header.tensors.get('f32')?.shape, [2, 3]);
    assert.deepEqual((await file.read('i32')).data, new Int32Array([0, -7, 2 ** 31 - 1]));
  } finally {
    await file.close();
  }
});

test('f16 conversion: specials and rounding', () => {
  assert.equal(f16ToF32(0x7c00), Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.equal(f32ToF16(65520), 0x7c00); // rounds up to inf
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie → even
  for (const v of [1, -2, 0.5, 3.140625, 2 ** -24, 1000]) assert.equal(f16ToF32(f32ToF16(v)), v);
});

const corrupt: Array<[string, Uint8Array, RegExp]> = [
  ['shorter than 8 bytes', new Uint8Array(5), /shorter than the 8-byte header length/],
  ['header length past EOF', raw(ok, 12, 10_000n), /runs past the end/],
  ['header length over the limit', raw(ok, 12, 200_000_000n), /exceeds the 100000000-byte limit/],
  ['header length huge (u64)', raw(ok, 12, 2n ** 63n), /exceeds/],
  ['not JSON', raw('{"a": [1, 2', 0), /not valid JSON/],
  ['not an object', raw('[1,2]', 0), /does not start with "\{"/],
  ['invalid UTF-8', (() => { const b = raw('{"\u00e9":1}', 0); b[10] = 0xff; return b; })(), /not valid UTF-8/],
  ['metadata not strings', raw({ __metadata__: { a: 1 } }, 0), /__metadata__.a is 1, not a string/],
  ['entry not an object', raw({ a: 3 }, 0), /tensor "a" is not an object/],
  ['extra key', raw({ a: { ...ok.a, extra: 1 } }, 8), /has keys \{data_offsets,dtype,extra,shape\}/],
  ['unsupported dtype', raw({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, 8), /unsupported dtype "F64"/],
  ['negative dim', raw({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /expected an array of non-negative integers/],
  ['fractional dim', raw({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 4), /non-negative integers/],
  ['offsets not a pair', raw({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), /expected \[begin, end\]/],
  ['begin > end', raw({ a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, 4), /begin > end/],
  ['offsets past data', raw({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), /past the 8-byte data section/],
  ['shape × dtype ≠ bytes', raw({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /F32 \[3\] needs 12 bytes but data_offsets \[0, 8\] span 8/],
  ['overlap', raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /"b" \[4, 8\] overlaps tensor "a"/],
  ['gap', raw({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12), /data bytes \[4, 8\) belong to no tensor/],
  ['trailing bytes', raw(ok, 20), /data bytes \[12, 20\) after the last tensor/],
  ['leading gap', raw({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /data bytes \[0, 4\) belong to no tensor/],
  ['empty name', raw({ '': ok.a }, 8), /empty name/],
];

for (const [name, bytes, message] of corrupt) {
  test(`corrupt: ${name} → 400 invalid_safetensors`, async () => {
    const check = (e: unknown) => {
      assert.ok(e instanceof PatchbayError);
      assert.equal(e.status, 400);
      assert.equal(e.code, 'invalid_safetensors');
      assert.match(e.message, message);
      return true;
    };
    assert.throws(() => decodeSafetensors(bytes, 'x.safetensors'), check);
    const dir = await mkdtemp(join(tmpdir(), 'st-'));
    await writeFile(join(dir, 'bad.safetensors'), bytes);
    await assert.rejects(SafetensorsFile.open(join(dir, 'bad.safetensors')), check);
    await assert.rejects(SafetensorsFile.open(join(dir, 'bad.safetensors'), { wholeUpTo: 1 << 20 }), check, 'read whole: the same refusal');
  });
}

test('a valid header reads no tensor bytes until asked', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'st-'));
  const path = join(dir, 'big.safetensors');
  await writeFile(path, encodeSafetensors({ w: { dtype: 'F32', shape: [256, 256], data: new Float32Array(65536) } }));
  const f = await SafetensorsFile.open(path);
  assert.deepEqual(f.header.tensors.get('w'), { name: 'w', dtype: 'F32', shape: [256, 256], begin: 0, end: 262144 });
  await f.close();
});

test('read whole (wholeUpTo): same header and tensors as header-first; views alias the file buffer, reads copy', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'st-'));
  const path = join(dir, 'w.safetensors');
  const f32 = Float32Array.from({ length: 24 }, (_, i) => i / 8 - 1);
  await writeFile(path, encodeSafetensors({ a: { dtype: 'F32', shape: [4, 6], data: f32 }, h: { dtype: 'F16', shape: [3], data: new Float32Array([1, -2, 0.5]) }, i: { dtype: 'I32', shape: [2], data: new Int32Array([3, -4]) } }));
  const parts = await SafetensorsFile.open(path);
  const whole = await SafetensorsFile.open(path, { wholeUpTo: 1 << 20 });
  const small = await SafetensorsFile.open(path, { wholeUpTo: 16 });
  try {
    assert.deepEqual([...whole.header.tensors], [...parts.header.tensors]);
    for (const name of ['a', 'h', 'i']) {
      assert.deepEqual(await whole.read(name), await parts.read(name));
      assert.deepEqual(await whole.read(name, { view: true }), await parts.read(name));
      assert.deepEqual(await small.read(name, { view: true }), await parts.read(name), 'over the limit: header-first reads');
    }
    const v1 = (await whole.read('a', { view: true })).data as Float32Array;
    const v2 = (await whole.read('a', { view: true })).data as Float32Array;
    assert.equal(v1.buffer, v2.buffer, 'an F32 view is no copy');
    const copy = (await whole.read('a')).data as Float32Array;
    assert.notEqual(copy.buffer, v1.buffer, 'read without view copies');
  } finally {
    await Promise.all([parts.close(), whole.close(), small.close()]);
  }
  // A directory where the file should be is refused as such, not read.
  await writeFile(join(dir, 'x'), '');
  await assert.rejects(SafetensorsFile.open(dir, { wholeUpTo: 1 << 20 }), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
});
