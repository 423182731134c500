/**
 * One contender of `bench:edits-search`: computes the same prompt edits (one stream, each applied) with the
 * edit code of the checkout it runs in (cwd), and prints {ms: per-edit compute times, steps} as JSON.
 * Imports by path from the cwd, so an older checkout's src/edits runs with this script unchanged.
 * argv: n [model dir]. tiny-gpt2 (default): the synthetic fact stream without subjects (keyed at the
 * predicting positions in old and new code). A Llama model (models/smollm2-135m): the real counterfactuals of
 * tools/edits/real_counterfactuals.json with their subjects, as eval:edits-chat posts them; needs the model's
 * edit_stats.safetensors (npm run edits:stats).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const at = (p: string) => import(join(process.cwd(), p));
const n = Number(process.argv[2] ?? '8');
const dir = process.argv[3] ?? 'models/tiny-gpt2';
const { EditComputer } = await at('src/edits/compute.ts');
const { EditState } = await at('src/edits/edit-state.ts');
const { KeyProbe } = await at('src/edits/probe.ts');
const { DEFAULT_EDIT_SETTINGS } = await at('src/edits/settings.ts');
const { readModelInfo } = await at('src/runtime/model-config.ts');
const { HfTokenizer } = await at('src/runtime/tokenizer.ts');
const { editLayerSpecs } = await import('./edit-specs.ts');
const { editStream, loadFacts } = await import('./edit-facts.ts');

const model = await readModelInfo(dir);
const bytes = new Uint8Array(readFileSync(model.onnxPath));
const { table, layers, specs } = editLayerSpecs(bytes, join(dir, 'edit_stats.safetensors'));
const read = (x: string) => table.read(x);
const llama = model.architecture === 'llama';
const probe = await KeyProbe.create(bytes, layers, model, 'cpu', 1);
// Imported only for the family run, so a checkout from before the Llama path can still be the GPT-2 `--old`.
const upper = llama
  ? (await at('src/edits/llama-upper.ts')).llamaUpper(model, read, layers)
  : new (await at('src/edits/gpt2-upper.ts')).Gpt2Upper(read, 3, model.numLayers, 256, model.numKvHeads, model.vocabSize);
const computer = new EditComputer(probe, upper, await HfTokenizer.load(model.dir), DEFAULT_EDIT_SETTINGS, model.contextLength);
const state = await EditState.initial(specs, 1, 1);
type Edit = { prompt: string; target: string; subject?: string };
const edits: Edit[] = llama
  ? (JSON.parse(readFileSync(new URL('../../tools/edits/real_counterfactuals.json', import.meta.url), 'utf8')) as { edits: Edit[] }).edits
      .slice(0, n + 1)
      .map((e) => ({ prompt: e.prompt, target: e.target, subject: e.subject }))
  : editStream(loadFacts(), n + 1).edits.map((e) => ({ prompt: e.prompt, target: e.target }));
// Warm-up (JIT) on an edit outside the measured ones, not applied.
await computer.compute(edits[n], state);
const ms: number[] = [];
const steps: number[] = [];
for (const [t, e] of edits.slice(0, n).entries()) {
  const t0 = performance.now();
  const c = await computer.compute(e, state);
  ms.push(performance.now() - t0);
  steps.push(c.search.steps);
  state.apply(t + 1, c.parts);
}
console.log(JSON.stringify({ ms, steps }));
await probe.release();
