/**
 * Generators against PyTorch (test/fixtures/generators/, written by tools/generators/train_generator.py):
 * Patchbay's string embedding (base tokenizer + the embedding table read from the base ONNX + the manifest's
 * projection) must give PyTorch's condition vector, and the base rewritten with delta branches, fed the
 * factors the ONNX generator produced for that condition, must give PyTorch's logits (frozen HF GPT-2 + the
 * PyTorch generator's factors as per-row LoRA hooks) within the fixture tolerance — for string and vector
 * conditions, alone and mixed in one batch.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { generatorKind, type LoadedGenerator } from '../../src/adapters/generator.ts';
import type { StringEmbeddingSource } from '../../src/adapters/generator-condition.ts';
import { decodeModel } from '../../src/runtime/graph/onnx.ts';
import { findTokenEmbedding } from '../../src/runtime/graph/token-embedding.ts';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';
import { deltaBase, forward as deltaForward, greedyTokens as deltaGreedy } from '../helpers/delta-forward.ts';
import { maxAbsDiff } from '../helpers/logits.ts';

interface Case {
  condition: string | number[];
  token_ids?: number[];
  mean_embedding?: number[];
  vector?: number[];
  prompts: Array<{ text: string; input_ids: number[]; last_logits: number[]; greedy: number[] }>;
}
interface Fixture {
  tolerance: number;
  embedding_tolerance: number;
  generator: string;
  base: string;
  cases: Case[];
  base_greedy: Record<string, number[]>;
}

const FIXTURES = 'test/fixtures/generators';
const files = existsSync(FIXTURES) ? readdirSync(FIXTURES).filter((f) => f.endsWith('.json')).sort() : [];

async function strings(base: string): Promise<StringEmbeddingSource> {
  const tok = await HfTokenizer.load(`models/${base}`);
  const table = findTokenEmbedding(decodeModel(new Uint8Array(await readFile(`models/${base}/onnx/model.onnx`))));
  return { encode: (t) => tok.encode(t), embedding: async () => table };
}

async function setup(fx: Fixture): Promise<{ gen: LoadedGenerator; src: StringEmbeddingSource }> {
  const b = await deltaBase(fx.base);
  const src = await strings(fx.base);
  const gen = await generatorKind.load(join('adapters', fx.generator), b.target, fx.generator, { strings: src });
  return { gen, src };
}

const bindingOf = async (gen: LoadedGenerator, c: Case): Promise<DeltaBinding> => (await gen.generate(await gen.condition(c.condition), 'test')).binding;

test('generator fixtures are present', () => {
  assert.ok(files.length >= 1, `expected a generator fixture in ${FIXTURES}: run tools/generators/train_generator.py`);
});

for (const file of files) {
  test(`${file}: string conditions embed as in PyTorch (token ids, mean embedding, projected vector)`, async (t) => {
    const fx = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Fixture;
    const { gen, src } = await setup(fx);
    let worst = 0;
    for (const c of fx.cases.filter((k) => typeof k.condition === 'string')) {
      const text = c.condition as string;
      assert.deepEqual(src.encode(text.toUpperCase()), c.token_ids, `${text}: token ids`);
      const table = await src.embedding();
      const mean = new Float32Array(table.dim);
      for (const id of c.token_ids!) table.row(id).forEach((v, j) => (mean[j]! += v / c.token_ids!.length));
      worst = Math.max(worst, maxAbsDiff(mean, c.mean_embedding!));
      const vec = await gen.condition(text);
      const d = maxAbsDiff(vec, c.vector!);
      assert.ok(d <= fx.embedding_tolerance, `${text}: condition vector differs by ${d}`);
      worst = Math.max(worst, d);
      // Case folding is the manifest's (`upper`): the lower-case name is the same condition.
      assert.deepEqual(await gen.condition(text.toLowerCase()), vec);
    }
    assert.ok(worst <= fx.embedding_tolerance, `embedding differs by ${worst}`);
    t.diagnostic(`max |embedding − PyTorch| = ${worst.toExponential(2)}`);
    await gen.close();
  });

  test(`${file}: logits with generated factors match PyTorch for string and vector conditions; greedy matches`, async (t) => {
    const fx = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Fixture;
    const b = await deltaBase(fx.base);
    const { gen } = await setup(fx);
    let worst = 0;
    for (const c of fx.cases) {
      const delta = await bindingOf(gen, c);
      for (const p of c.prompts) {
        const { data, vocab } = await deltaForward(b, [p.input_ids], [delta]);
        const d = maxAbsDiff(data.subarray(data.length - vocab), p.last_logits);
        assert.ok(d <= fx.tolerance, `${JSON.stringify(c.condition).slice(0, 30)} / ${JSON.stringify(p.text)}: logits differ by ${d}`);
        worst = Math.max(worst, d);
        assert.deepEqual(await deltaGreedy(b, p.input_ids, delta, p.greedy.length), p.greedy, `greedy under ${JSON.stringify(c.condition).slice(0, 30)}`);
      }
    }
    t.diagnostic(`max |logit − PyTorch| = ${worst.toExponential(2)} (tolerance ${fx.tolerance})`);
    await gen.close();
  });

  test(`${file}: one batch with the base and every condition gives each row its solo logits`, async () => {
    const fx = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Fixture;
    const b = await deltaBase(fx.base);
    const { gen } = await setup(fx);
    const deltas = [undefined, ...(await Promise.all(fx.cases.map((c) => bindingOf(gen, c))))];
    for (let pi = 0; pi < fx.cases[0]!.prompts.length; pi++) {
      const ids = fx.cases[0]!.prompts[pi]!.input_ids;
      const { data, seq, vocab } = await deltaForward(b, deltas.map(() => ids), deltas);
      const row = (r: number) => data.subarray((r * seq + seq - 1) * vocab, (r * seq + seq) * vocab);
      const alone = await deltaForward(b, [ids], [undefined]);
      assert.ok(maxAbsDiff(row(0), [...alone.data.subarray(alone.data.length - vocab)]) <= 1e-5, 'base row');
      fx.cases.forEach((c, i) => {
        const d = maxAbsDiff(row(i + 1), c.prompts[pi]!.last_logits);
        assert.ok(d <= fx.tolerance, `row ${i + 1} (${JSON.stringify(c.condition).slice(0, 30)}) differs by ${d}`);
      });
    }
    await gen.close();
  });

  test(`${file}: the conditions change the greedy text (from the base and from each other)`, async () => {
    const fx = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as Fixture;
    const texts = fx.cases.map((c) => c.prompts.map((p) => p.greedy.join()).join('|'));
    assert.equal(new Set(texts).size, fx.cases.length, 'every condition gives its own greedy text');
    const baseText = fx.cases[0]!.prompts.map((p) => fx.base_greedy[p.text]!.join()).join('|');
    assert.ok(!texts.includes(baseText), 'generated factors change the base greedy text');
  });
}
