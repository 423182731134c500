import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { EditComputer } from '../../src/edits/compute.ts';
import { EditState } from '../../src/edits/edit-state.ts';
import { Gpt2Upper } from '../../src/edits/gpt2-upper.ts';
import { KeyProbe } from '../../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { InitializerTable } from '../../src/runtime/versions/initializer-table.ts';
import { gpt2Specs, reference, refParts, relErr } from './fixture.ts';

/**
 * Keys (ORT probe graph), the value-search gradient (hand-written GPT-2 backward) and the searched values
 * against PyTorch (tools/edits/make_fixture.py), edit after edit of the reference stream, each edit
 * computed with the weights as edited so far. Tolerances: keys 1e-4 and gradients 1e-3 (float32 PyTorch
 * vs ORT float32 / TS float64), values after the Adam search 1e-3 (relative, whole array).
 */
const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const model = await readModelInfo('models/tiny-gpt2');
const table = InitializerTable.of(bytes);
const probe = await KeyProbe.create(bytes, reference.layers, model, 'cpu', 1);
after(() => probe.release());
// The value search runs from the block above the top edited layer (the fixture's layers: the shipped defaults).
const top = Math.max(...reference.layers.map((n) => Number(/\.h\.(\d+)\./.exec(n)![1])));
const upperOf = () => new Gpt2Upper((n) => table.read(n), top + 1, model.numLayers, 256, model.numKvHeads, model.vocabSize);
const computer = new EditComputer(
  probe,
  upperOf(),
  await HfTokenizer.load(model.dir),
  { ...DEFAULT_EDIT_SETTINGS, keys: reference.keys ?? 'subject+targets', anchorSubjects: reference.anchors ?? [] },
  model.contextLength,
);

test('keys, gradients and values of a 3-edit stream match PyTorch', async () => {
  const state = await EditState.initial(gpt2Specs(reference.layers), reference.lambda, reference.mu);
  for (const [t, ref] of reference.edits.entries()) {
    const edit = { prompt: ref.prompt, target: ref.target, subject: ref.subject };
    const { keys, grad, u } = await computer.inspect(edit, state);
    assert.equal(u, ref.u);
    for (const name of reference.layers) {
      const e = relErr(keys.get(name)!, ref.keys[name]!.flat());
      assert.ok(e < 1e-4, `edit ${t + 1} ${name}: keys rel err ${e}`);
    }
    const eg = relErr(grad, ref.grad0.flat());
    assert.ok(eg < 1e-3, `edit ${t + 1}: gradient rel err ${eg}`);
    if (ref.steps > 10) {
      // The long searches are covered by the gradient check; apply PyTorch's values to stay on its stream.
      state.apply(t + 1, refParts(ref, reference.layers));
      continue;
    }
    const computed = await computer.compute(edit, state);
    assert.equal(computed.search.steps, ref.steps, `edit ${t + 1}: Adam steps`);
    const expected = refParts(ref, reference.layers);
    for (const [i, p] of computed.parts.entries()) {
      assert.equal(p.u, expected[i]!.u, `edit ${t + 1} ${p.layer}: rows (keys + anchors)`);
      const ek = relErr(p.keys, expected[i]!.keys);
      assert.ok(ek < 1e-4, `edit ${t + 1} ${p.layer}: keys incl. anchors rel err ${ek}`);
      const ev = relErr(p.values, ref.values[p.layer]!.flat());
      assert.ok(ev < 1e-3, `edit ${t + 1} ${p.layer}: values rel err ${ev}`);
    }
    state.apply(t + 1, computed.parts);
  }
});

test("keys: 'subject' keys on the subject's last token only, the same key PyTorch computed there", async () => {
  // The fixture's keys of an edit with a subject under subject+targets start with the subject's key; under
  // 'subject' that row is the whole key (u = 1). An edit without a subject keeps its predicting positions.
  const subjectOnly = new EditComputer(probe, upperOf(), await HfTokenizer.load(model.dir), { ...DEFAULT_EDIT_SETTINGS, keys: 'subject' }, model.contextLength);
  const state = await EditState.initial(gpt2Specs(reference.layers), reference.lambda, reference.mu);
  const ref = reference.edits[0]!;
  assert.equal(ref.subject, undefined);
  const noSubject = await subjectOnly.inspect({ prompt: ref.prompt, target: ref.target }, state);
  assert.equal(noSubject.u, ref.u);
  state.apply(1, refParts(ref, reference.layers));
  const withSubject = reference.edits[1]!;
  assert.ok(withSubject.subject !== undefined && (reference.keys ?? 'subject+targets') === 'subject+targets');
  const { keys, u } = await subjectOnly.inspect({ prompt: withSubject.prompt, target: withSubject.target, subject: withSubject.subject }, state);
  assert.equal(u, 1);
  for (const name of reference.layers) {
    const e = relErr(keys.get(name)!, withSubject.keys[name]![0]!);
    assert.ok(e < 1e-4, `${name}: subject key rel err ${e}`);
  }
});

test('anchor subjects add one kept row per other subject: the swapped prompt\'s last-token key, value = its current output', async () => {
  // Anchors are opt-in (the shipped statistics record none, so the fixture has none): the edit's own rows must
  // still be PyTorch's, and each anchor row must be the key an edit of the swapped prompt would get at its
  // predicting position, mapped to what the layer outputs there now (zero residual: "leave this as it is").
  const anchored = new EditComputer(probe, upperOf(), await HfTokenizer.load(model.dir), { ...DEFAULT_EDIT_SETTINGS, anchorSubjects: ['Verona', 'Queen Amara', 'Mantua'] }, model.contextLength);
  const state = await EditState.initial(gpt2Specs(reference.layers), reference.lambda, reference.mu);
  state.apply(1, refParts(reference.edits[0]!, reference.layers));
  const ref = reference.edits[1]!;
  assert.equal(ref.subject, 'Queen Amara');
  const computed = await anchored.compute({ prompt: ref.prompt, target: ref.target, subject: ref.subject }, state);
  const swapped = ['Verona was born in', 'Mantua was born in']; // the edit's own subject is skipped
  const anchorKeys = await Promise.all(swapped.map(async (prompt) => (await anchored.inspect({ prompt, target: ref.target }, state)).keys));
  for (const p of computed.parts) {
    const l = state.layer(p.layer)!;
    assert.equal(p.u, ref.u + swapped.length);
    const ek = relErr(p.keys.subarray(0, ref.u * l.dK), ref.keys[p.layer]!.flat());
    const ev = relErr(p.values.subarray(0, ref.u * l.dV), ref.values[p.layer]!.flat());
    assert.ok(ek < 1e-4 && ev < 1e-3, `${p.layer}: the edit's own rows vs PyTorch: keys ${ek}, values ${ev}`);
    for (const [a, keys] of anchorKeys.entries()) {
      const row = ref.u + a;
      const key = p.keys.subarray(row * l.dK, (row + 1) * l.dK);
      const ea = relErr(key, keys.get(p.layer)!.subarray(0, l.dK));
      assert.ok(ea < 1e-6, `${p.layer}: anchor ${swapped[a]} key rel err ${ea}`);
      assert.deepEqual(p.values.subarray(row * l.dV, (row + 1) * l.dV), l.apply(key), `${p.layer}: anchor ${swapped[a]} keeps its output`);
    }
  }
});
