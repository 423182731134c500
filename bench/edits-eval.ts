/**
 * Sequential counterfactual edit streams on the embedded model (models/facts.jsonl), evaluated the way the
 * issue asks: edit success right after each edit, retention of the first 10 % at the end, paraphrase
 * success, preservation of unrelated fact answers, held-out perplexity drift. One policy per run:
 *   rls        RLSEdit, C kept across the whole stream
 *   reset:<k>  RLSEdit with C reset to C₀ every k edits (the public code's per-batch reset)
 *   hard       each edit solved alone by closed-form least squares (C reset every edit: no memory)
 * Usage: npm run eval:edits -- --policy rls --edits 100 [--out bench/out/edits-rls.json]
 * Runs in-process on TypeScript + ORT (no server); keys and values are recomputed for every edit with the
 * weights as edited so far, exactly as the server does.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { EditComputer, type PromptEdit } from '../src/edits/compute.ts';
import { EditState } from '../src/edits/edit-state.ts';
import { Gpt2Upper } from '../src/edits/gpt2-upper.ts';
import { KeyProbe } from '../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS } from '../src/edits/settings.ts';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { HfTokenizer } from '../src/runtime/tokenizer.ts';
import { editLayerSpecs } from './lib/edit-specs.ts';

const { values: args } = parseArgs({
  options: { policy: { type: 'string', default: 'rls' }, edits: { type: 'string', default: '100' }, out: { type: 'string' }, heldout: { type: 'string', default: '2048' } },
});
const N = Number(args.edits);
const policy = args.policy!;
const resetEvery = policy === 'rls' ? Infinity : policy === 'hard' ? 1 : Number(policy.split(':')[1]);

interface Fact { subject: string; relation: string; object: string; sentence: string }
const PARAPHRASE: Record<string, (s: string) => string> = {
  capital: (s) => `In ${s}, the capital is`,
  river_flows_into: (s) => `${s}'s river flows into the`,
  born_in: (s) => `The birthplace of ${s} is`,
  occupation: (s) => `By trade, ${s} works as a`,
  flag_colour: (s) => `${s} has a flag that is`,
  ruler: (s) => `The ruler of ${s} is`,
};
const facts = readFileSync('models/facts.jsonl', 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Fact);
const promptOf = (f: Fact) => f.sentence.slice(0, f.sentence.lastIndexOf(f.object)).trimEnd();
// Counterfactual target: the object of the next fact with the same relation and a different object.
const counterfactual = (i: number) => {
  const f = facts[i]!;
  for (let k = 1; k < facts.length; k++) {
    const g = facts[(i + k) % facts.length]!;
    if (g.relation === f.relation && g.object !== f.object) return ` ${g.object}`;
  }
  throw new Error('no counterfactual');
};
// Edited: every other fact (so each relation is represented), up to N; unrelated: the rest.
const editedIdx = facts.map((_, i) => i).filter((i) => i % 2 === 0).slice(0, N);
if (editedIdx.length < N) editedIdx.push(...facts.map((_, i) => i).filter((i) => i % 2 === 1).slice(0, N - editedIdx.length));
const unrelatedIdx = facts.map((_, i) => i).filter((i) => !editedIdx.includes(i)).slice(0, 50);

const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const model = await readModelInfo('models/tiny-gpt2');
const tok = await HfTokenizer.load(model.dir);
const { table, layers, specs } = editLayerSpecs(bytes);
const probe = await KeyProbe.create(bytes, layers, model, 'cpu', 1, { logits: true });
const top = Math.max(...layers.map((n) => Number(/\.h\.(\d+)\./.exec(n)![1])));
const computer = new EditComputer(probe, new Gpt2Upper((n) => table.read(n), top + 1, model.numLayers, 256, model.numKvHeads, model.vocabSize), tok, DEFAULT_EDIT_SETTINGS, model.contextLength);
const state = await EditState.initial(specs, DEFAULT_EDIT_SETTINGS.lambda, DEFAULT_EDIT_SETTINGS.mu);
const c0 = state.layers.map((l) => Float64Array.from(l.c));

async function greedy(prompt: string, n: number): Promise<number[]> {
  const ids = tok.encode(prompt);
  const out: number[] = [];
  const weights = state.weights32();
  for (let i = 0; i < n; i++) {
    const r = await probe.run(ids, weights);
    const logits = r.logits!;
    const V = model.vocabSize;
    const last = (ids.length - 1) * V;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[last + v]! > logits[last + best]!) best = v;
    ids.push(best);
    out.push(best);
  }
  return out;
}
const hits = async (prompt: string, target: string) => {
  const t = tok.encode(target);
  const g = await greedy(prompt, t.length);
  return g.every((x, i) => x === t[i]);
};

async function heldoutNll(): Promise<number> {
  const text = readFileSync('tools/.cache/corpus/heldout.txt', 'utf8');
  const ids = tok.encode(text).slice(0, Number(args.heldout));
  const weights = state.weights32();
  let nll = 0;
  let n = 0;
  for (let s = 0; s + 2 <= ids.length; s += 128) {
    const chunk = ids.slice(s, s + 128);
    const r = await probe.run(chunk, weights);
    const V = model.vocabSize;
    for (let p = 0; p + 1 < chunk.length; p++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, r.logits![p * V + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(r.logits![p * V + v]! - max);
      nll += max + Math.log(sum) - r.logits![p * V + chunk[p + 1]!]!;
      n++;
    }
  }
  return nll / n;
}

const t0 = performance.now();
const nllBefore = await heldoutNll();
const unrelatedBefore = await Promise.all(unrelatedIdx.map((i) => greedy(promptOf(facts[i]!), 4)));
const knownBefore = (await Promise.all(editedIdx.map((i) => hits(promptOf(facts[i]!), ` ${facts[i]!.object}`)))).filter(Boolean).length;
const edits: (PromptEdit & { paraphrase: string })[] = editedIdx.map((i) => ({ prompt: promptOf(facts[i]!), target: counterfactual(i), paraphrase: PARAPHRASE[facts[i]!.relation]!(facts[i]!.subject) }));
const success: boolean[] = [];
const editMs: number[] = [];
for (const [t, e] of edits.entries()) {
  const s0 = performance.now();
  const c = await computer.compute(e, state);
  state.apply(t + 1, c.parts);
  if ((t + 1) % resetEvery === 0) state.layers.forEach((l, k) => l.c.set(c0[k]!));
  editMs.push(performance.now() - s0);
  success.push(await hits(e.prompt, e.target));
  if ((t + 1) % 10 === 0) process.stderr.write(`${policy}: ${t + 1}/${N} edits, success so far ${success.filter(Boolean).length}, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
}
const firstTenth = edits.slice(0, Math.max(1, Math.round(N / 10)));
const retained = (await Promise.all(firstTenth.map((e) => hits(e.prompt, e.target)))).filter(Boolean).length;
const finalAll = (await Promise.all(edits.map((e) => hits(e.prompt, e.target)))).filter(Boolean).length;
const paraphrase = (await Promise.all(edits.map((e) => hits(e.paraphrase, e.target)))).filter(Boolean).length;
const unrelatedAfter = await Promise.all(unrelatedIdx.map((i) => greedy(promptOf(facts[i]!), 4)));
const preserved = unrelatedAfter.filter((g, k) => g.every((x, j) => x === unrelatedBefore[k]![j])).length;
const nllAfter = await heldoutNll();
const result = {
  policy,
  edits: N,
  known_before: knownBefore / N,
  edit_success: success.filter(Boolean).length / N,
  final_success_all: finalAll / N,
  retention_first_10pct: retained / firstTenth.length,
  paraphrase_success: paraphrase / N,
  preservation: preserved / unrelatedIdx.length,
  heldout_nll_before: nllBefore,
  heldout_nll_after: nllAfter,
  heldout_ppl_drift_pct: (Math.exp(nllAfter - nllBefore) - 1) * 100,
  median_edit_ms: [...editMs].sort((a, b) => a - b)[Math.floor(editMs.length / 2)],
  wall_s: (performance.now() - t0) / 1000,
};
console.log(JSON.stringify(result));
if (args.out) {
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(result, null, 1));
}
await probe.release();
