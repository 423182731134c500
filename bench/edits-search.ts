/**
 * npm run bench:edits-search -- --old DIR [--edits 8] [--trials 3] [--model models/smollm2-135m]: the value search (keys + Adam search, the
 * compute part of a prompt edit) of this checkout vs an older one (DIR: a checkout with node_modules and
 * models, e.g. `git archive <commit> src | tar -x -C DIR` plus links), on the same edit stream, each contender
 * in its own process, trials interleaved. Prints per-edit medians, ranges and the ratio; the Adam step counts
 * must agree (the speed-up may not change the search). --model: tiny-gpt2 (default) or a Llama model with its
 * edit_stats.safetensors (SmolLM2: the real counterfactuals with subjects; bench/lib/search-contender.ts).
 */
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({ options: { old: { type: 'string' }, edits: { type: 'string', default: '8' }, trials: { type: 'string', default: '3' }, model: { type: 'string', default: 'models/tiny-gpt2' } } });
if (!args.old) throw new Error('--old DIR is required (an older checkout to compare against)');
const script = resolve('bench/lib/search-contender.ts');
const run = (cwd: string) =>
  JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', script, args.edits!, resolve(args.model!)], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n').at(-1)!) as { ms: number[]; steps: number[] };
const res: Record<string, { ms: number[]; steps: number[] }> = { old: { ms: [], steps: [] }, new: { ms: [], steps: [] } };
for (let t = 0; t < Number(args.trials); t++) {
  for (const [name, cwd] of (t % 2 === 0 ? [['old', args.old], ['new', '.']] : [['new', '.'], ['old', args.old]]) as [string, string][]) {
    const r = run(cwd);
    res[name]!.ms.push(...r.ms);
    res[name]!.steps = r.steps;
  }
}
const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
console.log(`${args.model}: value search of ${args.edits} prompt edits (one stream, u = |target tokens|), ${args.trials} interleaved trials, each contender its own process`);
for (const n of ['old', 'new']) console.log(`  ${n}: median ${median(res[n]!.ms).toFixed(0)} ms per edit (${range(res[n]!.ms)}), Adam steps ${res[n]!.steps.join(',')}`);
console.log(`  old / new = ${(median(res.old!.ms) / median(res.new!.ms)).toFixed(2)}×; steps equal: ${res.old!.steps.join() === res.new!.steps.join()}`);
