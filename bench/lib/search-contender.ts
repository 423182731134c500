/**
 * One contender of `bench:edits-search`: computes the same prompt edits (one stream, each applied) with the
 * edit code of the checkout it runs in (cwd), and prints {ms: per-edit compute times, steps} as JSON.
 * Imports by path from the cwd, so an older checkout's src/edits runs with this script unchanged.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const at = (p: string) => import(join(process.cwd(), p));
const n = Number(process.argv[2] ?? '8');
const { EditComputer } = await at('src/edits/compute.ts');
const { EditState } = await at('src/edits/edit-state.ts');
const { Gpt2Upper } = await at('src/edits/gpt2-upper.ts');
const { KeyProbe } = await at('src/edits/probe.ts');
const { DEFAULT_EDIT_SETTINGS } = await at('src/edits/settings.ts');
const { readModelInfo } = await at('src/runtime/model-config.ts');
const { HfTokenizer } = await at('src/runtime/tokenizer.ts');
const { editLayerSpecs } = await import('./edit-specs.ts');
const { editStream, loadFacts } = await import('./edit-facts.ts');

const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const model = await readModelInfo('models/tiny-gpt2');
const { table, layers, specs } = editLayerSpecs(bytes);
const probe = await KeyProbe.create(bytes, layers, model, 'cpu', 1);
const computer = new EditComputer(probe, new Gpt2Upper((x: string) => table.read(x), 3, model.numLayers, 256, model.numKvHeads, model.vocabSize), await HfTokenizer.load(model.dir), DEFAULT_EDIT_SETTINGS, model.contextLength);
const state = await EditState.initial(specs, 1, 1);
// Edits without a subject: keyed at the predicting positions in both the old and the new code.
const edits = editStream(loadFacts(), n).edits.map((e) => ({ prompt: e.prompt, target: e.target }));
await computer.compute(edits[0], state); // warm-up (JIT), not applied
const ms: number[] = [];
const steps: number[] = [];
for (const [t, e] of edits.entries()) {
  const t0 = performance.now();
  const c = await computer.compute(e, state);
  ms.push(performance.now() - t0);
  steps.push(c.search.steps);
  state.apply(t + 1, c.parts);
}
console.log(JSON.stringify({ ms, steps }));
await probe.release();
