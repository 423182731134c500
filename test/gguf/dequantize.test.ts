import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { GgufFile, dequantizeTensor } from '../../src/runtime/gguf/index.ts';
import { GGUF_FIXTURE, GGUF_UNTIED_FIXTURE, loadReference } from './fixture.ts';

test('every tensor type dequantizes bit-exactly like gguf.quants.dequantize (sha256 of the float32 bytes)', () => {
  const ref = loadReference();
  const file = GgufFile.open(GGUF_FIXTURE);
  try {
    const seen = new Set<string>();
    for (const [name, expected] of Object.entries(ref.tensors)) {
      const info = file.tensor(name);
      assert.equal(info.typeName, expected.type, name);
      // GGUF dims are innermost first; the reference shape is NumPy's (outermost first).
      assert.deepEqual([...info.dims].reverse(), expected.shape, name);
      const values = dequantizeTensor(file, info);
      const head = Array.from(values.subarray(0, expected.head.length));
      assert.deepEqual(head, expected.head, `${name} (${info.typeName}) first values`);
      const sha = createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
      assert.equal(sha, expected.sha256, `${name} (${info.typeName}) differs from the reference somewhere`);
      seen.add(info.typeName);
    }
    assert.deepEqual([...seen].sort(), ['BF16', 'F16', 'F32', 'Q4_0', 'Q4_1', 'Q4_K', 'Q6_K', 'Q8_0']);
  } finally {
    file.close();
  }
});

test('header: version, alignment and metadata of the fixture are read', () => {
  const file = GgufFile.open(GGUF_FIXTURE);
  try {
    assert.equal(file.version, 3);
    assert.equal(file.alignment, 64);
    assert.equal(file.dataStart % 64, 0);
    assert.equal(file.metadata.string('general.architecture'), 'llama');
    assert.equal(file.metadata.positiveInt('llama.block_count'), 2);
    assert.equal(file.metadata.stringArray('tokenizer.ggml.tokens')!.length, 4096);
    assert.equal(file.metadata.bool('tokenizer.ggml.add_bos_token', true), false);
  } finally {
    file.close();
  }
});

test('the untied fixture (default alignment 32) dequantizes bit-exactly too', () => {
  const ref = loadReference('untied');
  const file = GgufFile.open(GGUF_UNTIED_FIXTURE);
  try {
    assert.equal(file.alignment, 32);
    for (const [name, expected] of Object.entries(ref.tensors)) {
      const values = dequantizeTensor(file, file.tensor(name));
      const sha = createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
      assert.equal(sha, expected.sha256, `${name} (${expected.type})`);
    }
  } finally {
    file.close();
  }
});
