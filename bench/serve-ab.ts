/**
 * bench/serve-ab — the same requests against two Patchbay servers side by side: this checkout and another
 * one (an older commit extracted with `git archive`), each in its own process, interleaved trials, medians.
 * Issue #11 uses it to show that requests asking for nothing new are not slower than before the feature.
 *
 *   git archive <commit> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/node_modules
 *   npm run bench:serve-ab -- --baseline /tmp/base [--trials 9] [--threads 1]
 */
import { parseArgs } from 'node:util';
import { startServer, timeCompletion } from './lib/server-process.ts';
import { median, row } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: {
    baseline: { type: 'string' },
    trials: { type: 'string', default: '9' },
    threads: { type: 'string', default: '1' },
  },
});
if (!args.baseline) throw new Error('--baseline <checkout dir> is required');
const env = { PATCHBAY_THREADS: args.threads!, PATCHBAY_MODEL_DIR: 'models/tiny-gpt2' };
const current = await startServer(env);
const baseline = await startServer(env, args.baseline);
const long = 'ROMEO.\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun. '.repeat(3);
const cases: [string, Record<string, unknown>][] = [
  ['greedy 8 → 64', { prompt: 'ROMEO.\nBut soft,', max_tokens: 64, temperature: 0, ignore_eos: true }],
  ['sampled top_p 0.9 → 64', { prompt: 'ROMEO.\nBut soft,', max_tokens: 64, temperature: 0.8, top_p: 0.9, seed: 3, ignore_eos: true }],
  ['long prompt (~100 tokens) → 1', { prompt: long, max_tokens: 1, temperature: 0 }],
];
const times = new Map<string, number[]>();
try {
  for (const [, body] of cases) for (const s of [current, baseline]) await timeCompletion(s.url, { model: 'tiny-gpt2', ...body }); // warm-up
  for (let t = 0; t < Number(args.trials); t++) {
    for (const [name, body] of cases) {
      // Alternate which server goes first, so neither always follows the other's burst.
      const order = t % 2 === 0 ? [current, baseline] : [baseline, current];
      for (const s of order) {
        const key = `${name}|${s === current ? 'current' : 'baseline'}`;
        const { ms } = await timeCompletion(s.url, { model: 'tiny-gpt2', ...body });
        (times.get(key) ?? times.set(key, []).get(key)!).push(ms);
      }
    }
  }
} finally {
  await current.stop();
  await baseline.stop();
}
console.log(`bench/serve-ab — tiny-gpt2 over HTTP, ${args.trials} interleaved trials, ${args.threads} ORT thread(s), baseline ${args.baseline}`);
const W = [32, 14, 14, 18];
console.log(row(['request', 'current ms', 'baseline ms', 'current/baseline'], W));
for (const [name] of cases) {
  const c = median(times.get(`${name}|current`)!);
  const b = median(times.get(`${name}|baseline`)!);
  console.log(row([name, c, b, (c / b).toFixed(3)], W));
}
