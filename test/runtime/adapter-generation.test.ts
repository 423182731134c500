import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadRuntime, type DeltaBinding, type GenerationResult, type Runtime } from '../../src/runtime/index.ts';
import { attachTarget, combineBindings, loadAdapter } from '../../src/adapters/index.ts';

/**
 * The whole serving path — scheduler, batch KV cache, per-row factors — against PEFT/PyTorch greedy
 * continuations (test/fixtures/adapters, from tools/adapters/train_adapters.py): every adapter fixture's
 * prompts run concurrently in one batch, each row with its own adapter (or combination), and each must
 * produce exactly the tokens PyTorch produced.
 */
interface Fixture {
  base: string;
  adapters: Array<{ id: string; weight: number }>;
  prompts: Array<{ input_ids: number[]; greedy: { new_token_ids: number[] }; base_greedy: { new_token_ids: number[] } }>;
}

const FIXTURES = 'test/fixtures/adapters';
const adapterDir = (base: string, id: string) => (base === 'tiny-gpt2' ? join('adapters', id) : join(FIXTURES, base, id));
const runtimes = new Map<string, Runtime>();
after(async () => {
  for (const rt of runtimes.values()) await rt.close();
});

async function runtimeFor(base: string): Promise<Runtime> {
  let rt = runtimes.get(base);
  if (!rt) {
    rt = await loadRuntime({ modelDir: `models/${base}`, device: 'cpu', maxBatch: 16, maxQueue: 64, threads: 1 });
    runtimes.set(base, rt);
  }
  return rt;
}

async function bindingOf(rt: Runtime, fx: Fixture): Promise<DeltaBinding> {
  const target = attachTarget(rt.rewrite!, 'all-linear');
  const parts = await Promise.all(
    fx.adapters.map(async (a) => ({ binding: (await loadAdapter(adapterDir(fx.base, a.id), target, a.id)).binding, weight: a.weight })),
  );
  return parts.length === 1 && parts[0]!.weight === 1 ? parts[0]!.binding : combineBindings(parts);
}

test('every adapter fixture, all rows in concurrent batches: greedy tokens equal PyTorch through the KV cache', async () => {
  const files = (await readdir(FIXTURES)).filter((f) => f.endsWith('.json')).sort();
  assert.ok(files.length >= 5, 'adapter fixtures present');
  const fixtures = await Promise.all(files.map(async (f) => ({ name: f, fx: JSON.parse(await readFile(join(FIXTURES, f), 'utf8')) as Fixture })));
  for (const base of new Set(fixtures.map((f) => f.fx.base))) {
    const rt = await runtimeFor(base);
    const jobs: Array<{ label: string; expected: number[]; result: Promise<GenerationResult> }> = [];
    for (const { name, fx } of fixtures.filter((f) => f.fx.base === base)) {
      const delta = await bindingOf(rt, fx);
      fx.prompts.forEach((p, i) => {
        const submit = (d: DeltaBinding | undefined, expected: number[], label: string) =>
          jobs.push({
            label,
            expected,
            result: rt.scheduler.submit({
              promptIds: p.input_ids,
              sampling: { maxTokens: expected.length, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true },
              ...(d ? { delta: d } : {}),
            }).result,
          });
        submit(delta, p.greedy.new_token_ids, `${name} prompt ${i}`);
        submit(undefined, p.base_greedy.new_token_ids, `${name} prompt ${i} (base row)`);
      });
    }
    for (const job of jobs) assert.deepEqual((await job.result).tokenIds, job.expected, job.label);
  }
});
