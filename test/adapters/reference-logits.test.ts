/**
 * End to end against PyTorch: the base ONNX model rewritten with delta branches, fed the demo adapters
 * (adapters/) as per-row factors, must give the logits PEFT / PyTorch gave (test/fixtures/adapters/,
 * written by tools/adapters/train_adapters.py) within the fixture tolerance — alone, combined, and mixed
 * in one batch. No KV cache: each run feeds empty past tensors [b, h, 0, hd] and the whole sequence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { combineBindings, loadAdapter } from '../../src/adapters/index.ts';
import { convertS2ft } from '../../src/adapters/s2ft-convert.ts';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';
import { tempDir } from './helpers.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { argmax } from '../../src/runtime/sampler.ts';
import { deltaBase, forward, type DeltaBase } from '../helpers/delta-forward.ts';

interface Fixture {
  tolerance: number;
  base: string;
  adapters: Array<{ id: string; weight: number }>;
  prompts: Array<{
    text: string;
    input_ids: number[];
    last_logits: number[];
    greedy: { new_token_ids: number[]; text: string };
    base_greedy: { new_token_ids: number[]; text: string };
  }>;
  all_position_logits: { prompt_index: number; logits: number[][] };
  fused_checkpoint?: string;
}

const FIXTURES = 'test/fixtures/adapters';
const fixtures = existsSync(FIXTURES) ? readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort() : [];

type Base = DeltaBase;
const base = deltaBase;

async function bindingFor(fx: Fixture, b: Base): Promise<DeltaBinding> {
  const parts = await Promise.all(fx.adapters.map(async (a) => ({ binding: (await loadAdapter(adapterDir(fx.base, a.id), b.target)).binding, weight: a.weight })));
  return parts.length === 1 && parts[0]!.weight === 1 ? parts[0]!.binding : combineBindings(parts);
}

async function greedy(b: Base, prompt: number[], delta: DeltaBinding | undefined, n: number): Promise<number[]> {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const { data, vocab } = await forward(b, [seq], [delta]);
    seq.push(argmax(data.subarray(data.length - vocab)));
  }
  return seq.slice(prompt.length);
}

/** The default model's demo set lives in adapters/ (served by default); other bases' adapters are test data. */
const adapterDir = (base: string, id: string) => (base === 'tiny-gpt2' ? join('adapters', id) : join(FIXTURES, base, id));

test('fixtures are present', () => {
  assert.ok(fixtures.length >= 5, `expected the adapter fixtures in ${FIXTURES}: run tools/adapters/train_adapters.py`);
});

for (const file of fixtures) {
  test(`${file}: logits match PyTorch (every prompt's last position, every position of one prompt), greedy matches`, async (t) => {
    const fx = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Fixture;
    const b = await base(fx.base);
    const delta = await bindingFor(fx, b);
    let worst = 0;
    for (const [i, p] of fx.prompts.entries()) {
      const { data, vocab } = await forward(b, [p.input_ids], [delta]);
      const diff = maxAbsDiff(data.subarray(data.length - vocab), p.last_logits);
      assert.ok(diff <= fx.tolerance, `prompt ${i}: last logits differ by ${diff}`);
      worst = Math.max(worst, diff);
      if (i === fx.all_position_logits.prompt_index) {
        fx.all_position_logits.logits.forEach((row, pos) => {
          const d = maxAbsDiff(data.subarray(pos * vocab, (pos + 1) * vocab), row);
          assert.ok(d <= fx.tolerance, `prompt ${i} position ${pos} differs by ${d}`);
          worst = Math.max(worst, d);
        });
      }
      assert.deepEqual(await greedy(b, p.input_ids, delta, p.greedy.new_token_ids.length), p.greedy.new_token_ids, `prompt ${i} greedy`);
    }
    t.diagnostic(`max |logit − PyTorch| = ${worst.toExponential(2)} (tolerance ${fx.tolerance})`);
  });
}

test('mixed batch: base, comedy, tragedy, their mix and S²FT rows in one run equal each alone', async () => {
  const names = ['lora-comedy', 'lora-tragedy', 'mix-comedy-tragedy', 's2ft-histories'];
  const fxs = await Promise.all(names.map(async (n) => JSON.parse(await readFile(join(FIXTURES, `${n}.json`), 'utf8')) as Fixture));
  const b = await base('tiny-gpt2');
  const deltas = [undefined, ...(await Promise.all(fxs.map((fx) => bindingFor(fx, b))))];
  for (let pi = 0; pi < fxs[0]!.prompts.length; pi++) {
    const ids = fxs[0]!.prompts[pi]!.input_ids;
    const { data, seq, vocab } = await forward(b, deltas.map(() => ids), deltas);
    const alone = await forward(b, [ids], [undefined]);
    const row = (r: number) => data.subarray((r * seq + seq - 1) * vocab, (r * seq + seq) * vocab);
    assert.ok(maxAbsDiff(row(0), [...alone.data.subarray(alone.data.length - vocab)]) <= 1e-5, 'base row');
    fxs.forEach((fx, i) => {
      const d = maxAbsDiff(row(i + 1), fx.prompts[pi]!.last_logits);
      assert.ok(d <= fx.tolerance, `${names[i]} row of prompt ${pi} differs by ${d}`);
    });
  }
});

test('greedy text differs between the base and every adapter', async () => {
  const names = ['lora-comedy', 'lora-tragedy', 'mix-comedy-tragedy', 's2ft-histories'];
  const texts = await Promise.all(names.map(async (n) => (JSON.parse(await readFile(join(FIXTURES, `${n}.json`), 'utf8')) as Fixture).prompts.map((p) => p.greedy.new_token_ids.join())));
  const baseText = (JSON.parse(await readFile(join(FIXTURES, 'lora-comedy.json'), 'utf8')) as Fixture).prompts.map((p) => p.base_greedy.new_token_ids.join());
  for (const t of texts) assert.notDeepEqual(t, baseText);
  assert.equal(new Set(texts.map((t) => t.join('|'))).size, names.length);
});

test('converter round trip on the trained S²FT: base + fused checkpoint → the idx and S that were trained', async (t) => {
  const fx = JSON.parse(await readFile(join(FIXTURES, 's2ft-histories.json'), 'utf8')) as Fixture;
  const fused = fx.fused_checkpoint!;
  if (!existsSync(join(fused, 'model.safetensors')) || !existsSync('tools/.cache/tiny-gpt2-hf/model.safetensors')) {
    t.skip(`${fused} not built (run tools/adapters/train_adapters.py)`);
    return;
  }
  const out = join(await tempDir('s2ft-'), 'converted');
  await convertS2ft({ base: 'tools/.cache/tiny-gpt2-hf', tuned: fused, out });
  const trained = decodeSafetensors(await readFile('adapters/s2ft-histories/adapter_model.safetensors'));
  const converted = decodeSafetensors(await readFile(join(out, 'adapter_model.safetensors')));
  assert.deepEqual([...converted.header.tensors.keys()].sort(), [...trained.header.tensors.keys()].sort());
  for (const name of trained.header.tensors.keys()) assert.deepEqual(converted.tensor(name), trained.tensor(name), name);
  const cfg = (p: string) => readFile(p, 'utf8').then((s) => JSON.parse(s).modules);
  assert.deepEqual(await cfg(join(out, 'adapter_config.json')), await cfg('adapters/s2ft-histories/adapter_config.json'));
});
