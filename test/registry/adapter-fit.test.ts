/**
 * Adapters declare their base: at startup only adapter directories that fit the served base are listed.
 * Checked with the repository's real adapters/ (made for tiny-gpt2) and PEFT files written for tiny-llama.
 */
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { AdapterRegistry } from '../../src/registry/adapter-registry.ts';
import { PatchbayError } from '../../src/errors.ts';
import { REPO_ROOT, realTarget, removeTempDirs, tempDir, writeCorruptLora, writeLora } from './fixtures.ts';

after(removeTempDirs);

async function mixedDir() {
  const llama = await realTarget('tiny-llama');
  const dir = await tempDir();
  for (const id of ['lora-comedy', 's2ft-histories']) await cp(path.join(REPO_ROOT, 'adapters', id), path.join(dir, id), { recursive: true });
  await writeLora(path.join(dir, 'llama-named'), llama, { modules: ['q_proj'], rank: 2, seed: 1, baseModel: 'org/tiny-llama' });
  await writeLora(path.join(dir, 'llama-unnamed'), llama, { modules: ['v_proj'], rank: 2, seed: 2 });
  await writeLora(path.join(dir, 'llama-other-name'), llama, { modules: ['q_proj'], rank: 2, seed: 3, baseModel: 'HuggingFaceTB/SmolLM2-135M-Instruct' });
  await writeCorruptLora(path.join(dir, 'broken'));
  return dir;
}

test('only adapters that fit the served base are listed; others are 400 with the reason when asked for', async () => {
  const dir = await mixedDir();
  const llama = new AdapterRegistry({ adapterDir: dir, maxBytes: 1 << 26, target: await realTarget('tiny-llama'), reserved: ['tiny-llama'] });
  // tiny-gpt2 adapters: their base name differs and their modules do not exist here; a name that is not
  // this base's is refused even though the shapes fit; no name → shapes decide; a broken file stays listed.
  assert.deepEqual((await llama.scan()).map((e) => e.id), ['broken', 'llama-named', 'llama-unnamed']);
  assert.deepEqual(llama.unfitAdapters().map((u) => u.id).sort(), ['llama-other-name', 'lora-comedy', 's2ft-histories']);
  assert.match(llama.unfitAdapters().find((u) => u.id === 'lora-comedy')!.reason, /trained on base model tiny-gpt2/);
  const err = await llama.binding('lora-comedy').then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof PatchbayError && err.status === 400 && err.code === 'adapter_base_mismatch', String(err));

  const gpt2 = new AdapterRegistry({ adapterDir: dir, maxBytes: 1 << 26, target: await realTarget('tiny-gpt2'), reserved: ['tiny-gpt2'] });
  assert.deepEqual((await gpt2.scan()).map((e) => e.id), ['broken', 'lora-comedy', 's2ft-histories']);
});
