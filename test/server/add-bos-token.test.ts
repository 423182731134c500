import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { loadRuntime } from '../../src/runtime/index.ts';
import { createBaseResolver } from '../../src/server/resolver.ts';
import { buildApp, post } from './helpers.ts';
import { GGUF_FIXTURE } from '../gguf/fixture.ts';

test('an imported model with add_bos_token: /v1/completions prompts start with BOS, chat prompts are the rendered template only', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'patchbay-bos-'));
  try {
    const modelDir = join(dir, 'tiny-gguf');
    await importGguf(GGUF_FIXTURE, modelDir, 'f32');
    const configPath = join(modelDir, 'tokenizer_config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    await writeFile(configPath, JSON.stringify({ ...config, add_bos_token: true }));
    const { app, state } = buildApp();
    const runtime = await loadRuntime({ modelDir, device: 'cpu', maxBatch: 4, maxQueue: 8, threads: 1 });
    state.markReady({ runtime, resolver: createBaseResolver({ id: runtime.model.id, contextLength: runtime.model.contextLength, created: 1 }) });
    try {
      const text = 'To be, or not';
      const plain = runtime.tokenizer.encode(text);
      const res = await post(app, '/v1/completions', { model: 'tiny-gguf', prompt: text, max_tokens: 1, temperature: 0 });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { usage: { prompt_tokens: number } };
      assert.equal(body.usage.prompt_tokens, plain.length + 1);
      const messages = [{ role: 'user' as const, content: text }];
      const chat = await post(app, '/v1/chat/completions', { model: 'tiny-gguf', messages, max_tokens: 1, temperature: 0 });
      assert.equal(chat.status, 200);
      const chatBody = (await chat.json()) as { usage: { prompt_tokens: number } };
      assert.equal(chatBody.usage.prompt_tokens, runtime.tokenizer.encode(runtime.tokenizer.applyChatTemplate(messages)).length);
    } finally {
      await runtime.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
