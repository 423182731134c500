/**
 * SentencePiece vocabularies in GGUF files (`tokenizer.ggml.model = llama`: TinyLlama, Llama 2) become a
 * tokenizer.json that encodes exactly as the SentencePiece model does (test/fixtures/tiny-gguf/spm-*, written by
 * tools/make_spm_fixture.py from a vocabulary the `sentencepiece` package trained; the reference ids are
 * `sp.encode`'s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgufFile } from '../../src/runtime/gguf/index.ts';
import { buildTokenizerFiles } from '../../src/import/tokenizer-files.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';

const FIXTURE = 'test/fixtures/tiny-gguf/spm-tokenizer.gguf';
interface Reference {
  vocab_size: number;
  bos_id: number;
  eos_id: number;
  unk_id: number;
  strings: { text: string; ids: number[]; pieces: string[] }[];
}

async function load(): Promise<{ tokenizer: HfTokenizer; files: ReturnType<typeof buildTokenizerFiles>; ref: Reference }> {
  const ref = JSON.parse(await readFile('test/fixtures/tiny-gguf/spm-reference.json', 'utf8')) as Reference;
  const files = buildTokenizerFiles(GgufFile.open(FIXTURE), 2048);
  const dir = await mkdtemp(join(tmpdir(), 'patchbay-spm-'));
  try {
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizerJson));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
    return { tokenizer: await HfTokenizer.load(dir), files, ref };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a SentencePiece vocabulary encodes every reference string to SentencePiece ids and decodes back', async () => {
  const { tokenizer, ref } = await load();
  assert.ok(ref.strings.some((s) => s.pieces.some((p) => /^<0x[0-9A-F]{2}>$/.test(p))), 'the fixture exercises byte fallback');
  assert.ok(ref.strings.some((s) => s.pieces.some((p) => [...p].length >= 4)), 'the fixture exercises merges');
  for (const { text, ids } of ref.strings) {
    assert.deepEqual(tokenizer.encode(text), ids, JSON.stringify(text));
    assert.equal(tokenizer.decode(ids), text, JSON.stringify(text));
  }
});

test('special ids, BOS and the chat template come from the metadata', async () => {
  const { tokenizer, files, ref } = await load();
  assert.equal(files.bosTokenId, ref.bos_id);
  assert.equal(files.eosTokenId, ref.eos_id);
  assert.equal(files.tokenizerConfig['unk_token'], '<unk>');
  assert.equal(files.tokenizerConfig['add_bos_token'], true);
  assert.deepEqual(tokenizer.encodePrompt('To be')[0], ref.bos_id);
  // Control pieces are special added tokens: matched whole in text (as for the byte-level vocabularies) and
  // dropped when decoding.
  assert.deepEqual(tokenizer.encode('</s>'), [ref.eos_id]);
  assert.equal(tokenizer.decode([ref.bos_id, ...tokenizer.encode('To be'), ref.eos_id]), 'To be');
  assert.ok(files.chatTemplate?.includes('<|assistant|>'));
});
