/**
 * Sequential counterfactual edit streams on the embedded model (bench/lib/edit-facts.ts), evaluated the way
 * the issue asks, at each mark of the stream (e.g. after edit 100 and 1000 of one stream: the 100-edit
 * stream is the 1000-edit stream's first 100): edit success right after each edit, success of all edits so
 * far, retention of the first 10 %, paraphrase success, preservation of 50 held-out fact answers (greedy,
 * 4 tokens), held-out perplexity drift. One policy per run:
 *   rls        RLSEdit, C kept across the whole stream
 *   reset:<k>  RLSEdit with C reset to C₀ every k edits (the public code's per-batch reset)
 *   hard       each edit solved alone by closed-form least squares (C reset every edit: no memory)
 * Usage (one command, resumable: rerun the same command after an interruption and it continues from the last
 * checkpoint in --state):
 *   npm run eval:edits -- --policy rls --edits 1000 --marks 100,1000 --out bench/out/edits-rls.json
 *     [--state DIR] [--keys subject|subject+targets|targets] [--anchors S1,S2,…] [--anchor-recent M] [--layers 0,1] [--stats FILE] [--lambda 1] [--mu 10]
 *     (defaults: the layers and μ recorded in the statistics file)
 *     [--steps 25] [--lr 0.5] [--wd 0.5] [--clamp 4] [--stop 0.05]
 * Runs in-process on TypeScript + ORT (no server); keys and values are recomputed for every edit with the
 * weights as edited so far, exactly as the server does.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { EditComputer } from '../src/edits/compute.ts';
import { EditState } from '../src/edits/edit-state.ts';
import { Gpt2Upper } from '../src/edits/gpt2-upper.ts';
import { KeyProbe } from '../src/edits/probe.ts';
import { DEFAULT_EDIT_SETTINGS, resolveAnchors, resolveMu, type EditSettings, type KeyPositions } from '../src/edits/settings.ts';
import { SnapshotStore } from '../src/edits/snapshots.ts';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { HfTokenizer } from '../src/runtime/tokenizer.ts';
import { editLayerSpecs } from './lib/edit-specs.ts';
import { editStream, loadFacts, promptOf } from './lib/edit-facts.ts';

const { values: args } = parseArgs({
  options: {
    policy: { type: 'string', default: 'rls' }, edits: { type: 'string', default: '100' }, marks: { type: 'string' }, out: { type: 'string' },
    state: { type: 'string' }, 'checkpoint-every': { type: 'string', default: '50' }, heldout: { type: 'string', default: '2048' },
    keys: { type: 'string', default: 'subject+targets' }, layers: { type: 'string' }, stats: { type: 'string', default: 'models/tiny-gpt2/edit_stats.safetensors' },
    anchors: { type: 'string' }, 'anchor-recent': { type: 'string', default: '0' }, lambda: { type: 'string' }, mu: { type: 'string' }, steps: { type: 'string' }, lr: { type: 'string' }, wd: { type: 'string' }, clamp: { type: 'string' }, stop: { type: 'string' },
  },
});
const N = Number(args.edits);
const marks = (args.marks ?? String(N)).split(',').map(Number).filter((m) => m <= N);
const policy = args.policy!;
const resetEvery = policy === 'rls' ? Infinity : policy === 'hard' ? 1 : Number(policy.split(':')[1]);
if (!(resetEvery >= 1)) throw new Error(`--policy ${policy}: expected rls, hard or reset:<k>`);
const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
const vs = DEFAULT_EDIT_SETTINGS.valueSearch;
const keyMode = args.keys as KeyPositions | 'targets';
const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const all = editLayerSpecs(bytes, args.stats);
const settings: EditSettings & { mu: number } = {
  ...DEFAULT_EDIT_SETTINGS,
  keys: keyMode === 'targets' ? 'subject+targets' : keyMode,
  // Default: the anchor subjects recorded with the statistics, as the server does (--anchors '' = none).
  anchorSubjects: resolveAnchors(args.anchors === undefined ? {} : { anchorSubjects: args.anchors.split(',').filter((s) => s !== '') }, all.metadata),
  lambda: num(args.lambda, DEFAULT_EDIT_SETTINGS.lambda),
  // Default: the μ recorded with the statistics, as the server does.
  mu: resolveMu({ ...(args.mu !== undefined ? { mu: Number(args.mu) } : {}) }, all.metadata),
  valueSearch: { steps: num(args.steps, vs.steps), lr: num(args.lr, vs.lr), weightDecay: num(args.wd, vs.weightDecay), clamp: num(args.clamp, vs.clamp), stopNll: num(args.stop, vs.stopNll) },
};

const model = await readModelInfo('models/tiny-gpt2');
const tok = await HfTokenizer.load(model.dir);
const layers = args.layers ? args.layers.split(',').map((i) => `transformer.h.${i}.mlp.c_proj`) : all.layers;
const specs = layers.map((n) => {
  const s = all.specs.find((x) => x.name === n);
  if (!s) throw new Error(`${args.stats} has no key statistics for ${n}`);
  return s;
});
const table = all.table;
const probe = await KeyProbe.create(bytes, layers, model, 'cpu', 1, { logits: true });
const top = Math.max(...layers.map((n) => Number(/\.h\.(\d+)\./.exec(n)![1])));
// --anchor-recent M (experiment, not a server setting): each edit's anchor subjects are the subjects of the M
// edits before it (instead of a fixed list): "leave what this question says about subjects already edited".
const recent = Number(args['anchor-recent']);
const anchorList: string[] = recent > 0 ? [] : [...(settings.anchorSubjects ?? [])];
settings.anchorSubjects = anchorList;
const computer = new EditComputer(probe, new Gpt2Upper((n) => table.read(n), top + 1, model.numLayers, 256, model.numKvHeads, model.vocabSize), tok, settings, model.contextLength);
const initial = await EditState.initial(specs, settings.lambda, settings.mu);
const c0 = initial.layers.map((l) => Float64Array.from(l.c));
const config = { policy, edits: N, keys: keyMode, anchors: recent > 0 ? `the ${recent} previous edits' subjects` : settings.anchorSubjects, layers, lambda: settings.lambda, mu: settings.mu, value_search: settings.valueSearch, stats: args.stats };

async function greedy(state: EditState, prompt: string, n: number): Promise<number[]> {
  const ids = tok.encode(prompt);
  const out: number[] = [];
  const weights = state.weights32();
  const V = model.vocabSize;
  for (let i = 0; i < n; i++) {
    const logits = (await probe.run(ids, weights)).logits!;
    const last = (ids.length - 1) * V;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[last + v]! > logits[last + best]!) best = v;
    ids.push(best);
    out.push(best);
  }
  return out;
}
const hits = async (state: EditState, prompt: string, target: string) => {
  const t = tok.encode(target);
  const g = await greedy(state, prompt, t.length);
  return g.every((x, i) => x === t[i]);
};
const count = async (state: EditState, xs: { prompt: string; target: string }[]) => {
  let k = 0;
  for (const x of xs) if (await hits(state, x.prompt, x.target)) k++;
  return k;
};

async function heldoutNll(state: EditState): Promise<number> {
  const ids = tok.encode(readFileSync('tools/.cache/corpus/heldout.txt', 'utf8')).slice(0, Number(args.heldout));
  const weights = state.weights32();
  const V = model.vocabSize;
  let nll = 0;
  let n = 0;
  for (let s = 0; s + 2 <= ids.length; s += 128) {
    const chunk = ids.slice(s, s + 128);
    const logits = (await probe.run(chunk, weights)).logits!;
    for (let p = 0; p + 1 < chunk.length; p++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[p * V + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[p * V + v]! - max);
      nll += max + Math.log(sum) - logits[p * V + chunk[p + 1]!]!;
      n++;
    }
  }
  return nll / n;
}

const { edits, heldOut } = editStream(loadFacts(), N);
interface Progress {
  config: typeof config;
  done: number;
  success: boolean[];
  editMs: number[];
  steps: number[];
  before: { nll: number; unrelated: number[][]; known: number };
  results: Record<string, unknown>[];
}
// Resume from --state when it holds a checkpoint of this exact configuration.
const stateDir = args.state;
const snaps = stateDir ? new SnapshotStore(join(stateDir, 'snapshots'), JSON.stringify(config), 1) : undefined;
const progressFile = stateDir ? join(stateDir, 'progress.json') : undefined;
let progress: Progress | undefined;
let state = initial.clone();
if (progressFile && existsSync(progressFile)) {
  const p = JSON.parse(readFileSync(progressFile, 'utf8')) as Progress;
  const snap = snaps!.read(p.done);
  if (JSON.stringify(p.config) === JSON.stringify(config) && (p.done === 0 || snap)) {
    progress = p;
    if (snap) state = snap;
    process.stderr.write(`${policy}: resuming after edit ${p.done}\n`);
  }
}
const t0 = performance.now();
if (!progress) {
  const unrelated: number[][] = [];
  for (const f of heldOut) unrelated.push(await greedy(state, promptOf(f), 4));
  const known = await count(state, edits.filter((e) => e.trueObject).map((e) => ({ prompt: e.prompt, target: ` ${e.trueObject}` })));
  progress = { config, done: 0, success: [], editMs: [], steps: [], before: { nll: await heldoutNll(state), unrelated, known }, results: [] };
}
const checkpoint = () => {
  if (!stateDir) return;
  mkdirSync(stateDir, { recursive: true });
  if (progress!.done > 0) snaps!.write(state);
  writeFileSync(progressFile!, JSON.stringify(progress));
};

async function evaluate(m: number): Promise<Record<string, unknown>> {
  const p = progress!;
  const so = edits.slice(0, m);
  const firstTenth = so.slice(0, Math.max(1, Math.round(m / 10)));
  let preserved = 0;
  for (const [k, f] of heldOut.entries()) {
    const g = await greedy(state, promptOf(f), 4);
    if (g.every((x, j) => x === p.before.unrelated[k]![j])) preserved++;
  }
  const nllAfter = await heldoutNll(state);
  const ms = [...p.editMs.slice(0, m)].sort((a, b) => a - b);
  return {
    ...config,
    edits: m,
    // Of the stream's edits that overwrite a trained fact: share whose true object the model answered before.
    known_before: p.before.known / Math.max(1, edits.filter((e) => e.trueObject).length),
    edit_success: p.success.slice(0, m).filter(Boolean).length / m,
    final_success_all: (await count(state, so)) / m,
    retention_first_10pct: (await count(state, firstTenth)) / firstTenth.length,
    paraphrase_success: (await count(state, so.map((e) => ({ prompt: e.paraphrase, target: e.target })))) / m,
    preservation: preserved / heldOut.length,
    heldout_nll_before: p.before.nll,
    heldout_nll_after: nllAfter,
    heldout_ppl_drift_pct: (Math.exp(nllAfter - p.before.nll) - 1) * 100,
    median_edit_ms: ms[Math.floor(ms.length / 2)],
    median_search_steps: [...p.steps.slice(0, m)].sort((a, b) => a - b)[Math.floor(m / 2)],
  };
}

for (let t = progress.done; t < N; t++) {
  const e = edits[t]!;
  const s0 = performance.now();
  if (recent > 0) anchorList.splice(0, anchorList.length, ...new Set(edits.slice(Math.max(0, t - recent), t).map((p) => p.subject)));
  const c = await computer.compute(keyMode === 'targets' ? { prompt: e.prompt, target: e.target } : e, state);
  state.apply(t + 1, c.parts);
  if ((t + 1) % resetEvery === 0) state.layers.forEach((l, k) => l.c.set(c0[k]!));
  progress.editMs.push(performance.now() - s0);
  progress.steps.push(c.search.steps);
  progress.success.push(await hits(state, e.prompt, e.target));
  progress.done = t + 1;
  if (marks.includes(t + 1)) {
    const r = await evaluate(t + 1);
    progress.results.push(r);
    console.log(JSON.stringify(r));
  }
  if ((t + 1) % 10 === 0) process.stderr.write(`${policy}: ${t + 1}/${N} edits, success so far ${progress.success.filter(Boolean).length}, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  if ((t + 1) % Number(args['checkpoint-every']) === 0 || marks.includes(t + 1)) checkpoint();
}
if (args.out) {
  mkdirSync(dirname(args.out), { recursive: true });
  writeFileSync(args.out, JSON.stringify(progress.results, null, 1));
}
await probe.release();
