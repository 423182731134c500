import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EditService } from '../../src/edits/edit-service.ts';
import { EditError } from '../../src/edits/errors.ts';
import { KeyProbe } from '../../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { loadRuntime } from '../../src/runtime/index.ts';

/**
 * Prompt edits on a Llama model (tiny-llama, the shipped key statistics for model.layers.0.mlp.down_proj) go
 * through the real EditService: the value search runs, the edit is durable and published, the served weights
 * raise the target's log-probability at the prompt, and a bad edit changes nothing. (tiny-llama is barely
 * trained — its next-token distribution is near uniform, NLL ≈ ln 4096 — so the greedy answer is not expected
 * to flip; test/edits/llama-reference.test.ts checks the numbers against PyTorch.)
 */
const dir = 'models/tiny-llama';
const runtime = await loadRuntime({ modelDir: dir, device: 'cpu', maxBatch: 4, maxQueue: 16, threads: 1 });
const edits = await EditService.create({
  model: runtime.model, tokenizer: runtime.tokenizer, versions: runtime.versions, dataDir: mkdtempSync(join(tmpdir(), 'llama-edits-')),
  settings: DEFAULT_EDIT_SETTINGS, device: 'cpu', threads: 1,
});
const probe = await KeyProbe.create(new Uint8Array(readFileSync(runtime.model.onnxPath)), edits.layers, runtime.model, 'cpu', 1, { logits: true });
after(async () => {
  await probe.release();
  await edits.close();
  await runtime.close();
});

/** log p(target's first token | prompt) with the weights the current base version serves. */
async function logProb(prompt: string, token: number): Promise<number> {
  const ids = runtime.tokenizer.encode(prompt);
  const v = runtime.versions.current();
  const weights = new Map(probe.layers.map((l) => [l.initializer, v.tensors.get(l.initializer) ?? runtime.versions.pristine(l.initializer)]));
  const r = await probe.run(ids, weights);
  const V = runtime.model.vocabSize;
  const row = r.logits!.subarray((ids.length - 1) * V, ids.length * V);
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return row[token]! - max - Math.log(sum);
}

test('a Llama prompt edit is searched, durable, published and raises the target probability', async () => {
  assert.equal(edits.status()['settings'] && (edits.status()['settings'] as { prompt_edits: boolean }).prompt_edits, true);
  const prompt = 'The capital of Veldor is';
  const target = runtime.tokenizer.encode(' Quillon')[0]!;
  const before = await logProb(prompt, target);
  const hash = edits.stateHash;
  await assert.rejects(edits.submit([{ prompt, target: ' Quillon', subject: 'Ostia' }]), (e: unknown) => e instanceof EditError && e.code === 'subject_not_found');
  assert.equal(edits.stateHash, hash, 'a rejected edit changed the state');
  assert.equal(edits.seq, 0);
  const [ack] = await edits.submit([{ prompt, target: ' Quillon', subject: 'Veldor' }]);
  assert.equal(ack!.seq, 1);
  assert.ok(ack!.search!.nllAfter < ack!.search!.nllBefore, JSON.stringify(ack!.search));
  assert.deepEqual(runtime.versions.current().labels['edits'], { editSeq: 1 });
  const after1 = await logProb(prompt, target);
  assert.ok(after1 > before + 0.1, `log p(target) ${before} → ${after1}`);
});
