import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { PatchbayError } from '../../src/errors.ts';

async function withTokenizerDir(edit: (dir: string, config: Record<string, unknown>) => Promise<void>, check: (dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), 'patchbay-tok-'));
  try {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await cp(join('models/tiny-llama', f), join(dir, f));
    const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    await edit(dir, config);
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    await check(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('chat_template.jinja beside the tokenizer files is the chat template (it wins over tokenizer_config.json)', async () => {
  await withTokenizerDir(
    async (dir) => writeFile(join(dir, 'chat_template.jinja'), "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}|{% endfor %}{{ bos_token }}"),
    async (dir) => {
      const tok = await HfTokenizer.load(dir);
      assert.equal(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]), '[user] hi|<|endoftext|>');
    },
  );
  // Without the file, tokenizer_config.json's template applies as before.
  await withTokenizerDir(async () => {}, async (dir) => {
    const tok = await HfTokenizer.load(dir);
    assert.equal(tok.applyChatTemplate([{ role: 'user', content: 'hi' }]), 'user: hi\nassistant:');
  });
});

test('add_bos_token: completion prompts start with BOS (once); encode() and models without the flag are unchanged', async () => {
  const text = 'To be, or not';
  const plain = (await HfTokenizer.load('models/tiny-llama')).encode(text);
  assert.deepEqual((await HfTokenizer.load('models/tiny-llama')).encodePrompt(text), plain);
  await withTokenizerDir(
    async (_dir, config) => void (config['add_bos_token'] = true),
    async (dir) => {
      const tok = await HfTokenizer.load(dir);
      assert.deepEqual(tok.encodePrompt(text), [0, ...plain]);
      assert.deepEqual(tok.encode(text), plain);
      assert.deepEqual(tok.encodePrompt(`<|endoftext|>${text}`), [0, ...plain]);
    },
  );
  await withTokenizerDir(
    async (_dir, config) => {
      config['add_bos_token'] = true;
      config['bos_token'] = '<not-in-vocab>';
    },
    async (dir) => {
      await assert.rejects(HfTokenizer.load(dir), (e: unknown) => e instanceof PatchbayError && e.code === 'invalid_model' && /add_bos_token/.test(e.message));
    },
  );
});
