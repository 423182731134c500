import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { EditComputer } from '../../src/edits/compute.ts';
import { EditState, type LayerSpec } from '../../src/edits/edit-state.ts';
import { llamaUpper } from '../../src/edits/llama-upper.ts';
import { KeyProbe } from '../../src/edits/probe.ts';
import { CHAT_CONTEXT_TEMPLATES, CONTEXT_TEMPLATES, DEFAULT_EDIT_SETTINGS, type EditContexts } from '../../src/edits/settings.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';
import { relErr } from './fixture.ts';

/**
 * Chat contexts (settings.contexts, PATCHBAY_EDIT_CONTEXTS) on tiny-llama: the 'chat' keys are the probe's
 * layer inputs in the model's chat template rendering "<user turn>{prompt}" at the subject's last token in the
 * answer and at the prompt's last token, averaged over CHAT_CONTEXT_TEMPLATES (recomputed here from probe runs
 * on texts rendered and tokenised by the test); 'plain+chat' averages all eight contexts; the gradient changes.
 */
const dir = 'models/tiny-llama';
const layer = 'model.layers.0.mlp.down_proj';
const bytes = new Uint8Array(readFileSync(`${dir}/onnx/model.onnx`));
const model = await readModelInfo(dir);
const table = InitializerTable.of(bytes);
const probe = await KeyProbe.create(bytes, [layer], model, 'cpu', 1);
after(() => probe.release());
const read = (n: string) => table.read(probe.initializerFor(n));
const tokenizer = await HfTokenizer.load(dir);
const stats = decodeSafetensors(new Uint8Array(readFileSync(`${dir}/edit_stats.safetensors`)));
const w0 = table.read(`${layer}.weight`);
const mom2 = stats.tensor(`${layer}.mom2`).data as Float32Array;
const spec: LayerSpec = { name: layer, initializer: `${layer}.weight`, dK: Math.sqrt(mom2.length), dV: w0.length / Math.sqrt(mom2.length), w0, mom2 };
const state = await EditState.initial([spec], 1, 1);
const edit = { prompt: 'The capital of France is', target: ' Lyon', subject: 'France' };
const inspect = (contexts: EditContexts) =>
  new EditComputer(probe, llamaUpper(model, read, [layer]), tokenizer, { ...DEFAULT_EDIT_SETTINGS, contexts }, model.contextLength).inspect(edit, state);

test('chat contexts: keys from the chat template rendering, averaged with the plain ones under plain+chat', async () => {
  const plain = await inspect('plain');
  const chat = await inspect('chat');
  const both = await inspect('plain+chat');
  const dK = spec.dK;
  // u = the subject + every predicting position (subject+targets): the prompt's last token and the target's but the last.
  const targetIds = tokenizer.encode(edit.target);
  assert.equal(chat.u, 1 + targetIds.length);
  const expected = new Float64Array(chat.u * dK);
  for (const tpl of CHAT_CONTEXT_TEMPLATES) {
    const rendered = tokenizer.applyChatTemplate([{ role: 'user', content: tpl.replace('{}', edit.prompt) }]);
    assert.ok(rendered.includes(edit.prompt) && rendered.length > edit.prompt.length);
    const ids = tokenizer.encode(rendered + edit.prompt);
    const subjectEnd = tokenizer.encode(rendered + 'The capital of France').length - 1;
    const x = (await probe.run([...ids, ...targetIds.slice(0, -1)], state.weights32())).inputs.get(layer)!;
    for (const [a, p] of [subjectEnd, ...targetIds.map((_, j) => ids.length - 1 + j)].entries()) {
      for (let i = 0; i < dK; i++) expected[a * dK + i]! += x[p * dK + i]! / CHAT_CONTEXT_TEMPLATES.length;
    }
  }
  assert.ok(relErr(chat.keys.get(layer)!, expected) < 1e-9, 'chat keys');
  const nP = CONTEXT_TEMPLATES.length;
  const nC = CHAT_CONTEXT_TEMPLATES.length;
  const mix = plain.keys.get(layer)!.map((v, i) => (nP * v + nC * chat.keys.get(layer)![i]!) / (nP + nC));
  assert.ok(relErr(both.keys.get(layer)!, mix) < 1e-9, 'plain+chat keys are the average over all contexts');
  assert.ok(relErr(chat.keys.get(layer)!, plain.keys.get(layer)!) > 1e-3, 'chat keys differ from plain ones');
  assert.ok(relErr(chat.grad, plain.grad) > 1e-3, 'the value-search gradient sees the chat contexts');
});
