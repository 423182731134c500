import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HfTokenizer } from '../../src/runtime/tokenizer.ts';
import { Sequence } from '../../src/runtime/sequence.ts';
import type { SamplingParams } from '../../src/runtime/types.ts';

const tokenizer = await HfTokenizer.load('models/tiny-gpt2');
const EOS = 0;
const vocab = 4096;
/** Logits whose argmax is `id`. */
const pointing = (id: number) => {
  const l = new Float32Array(vocab);
  l[id] = 10;
  return l;
};
const greedy = (over: Partial<SamplingParams> = {}): SamplingParams => ({ maxTokens: 4, temperature: 0, topP: 1, topK: 0, stop: [], ...over });

test('EOS ends a sequence with finish_reason stop and is not part of the output', async () => {
  const seq = new Sequence({ promptIds: [5], sampling: greedy() }, tokenizer, [EOS]);
  const word = tokenizer.encode(' lord')[0]!;
  assert.equal(seq.step(pointing(word)), false);
  assert.equal(seq.step(pointing(EOS)), true);
  const r = await seq.result;
  assert.equal(r.finishReason, 'stop');
  assert.deepEqual(r.tokenIds, [word]);
  assert.equal(r.text, ' lord');
});

test('ignoreEos keeps going past EOS until max_tokens', async () => {
  const seq = new Sequence({ promptIds: [5], sampling: greedy({ ignoreEos: true, maxTokens: 3 }) }, tokenizer, [EOS]);
  assert.equal(seq.step(pointing(EOS)), false);
  assert.equal(seq.step(pointing(EOS)), false);
  assert.equal(seq.step(pointing(EOS)), true);
  const r = await seq.result;
  assert.equal(r.finishReason, 'length');
  assert.equal(r.completionTokens, 3);
});

test('a character split over several byte-level tokens is streamed only once complete', async () => {
  const ids = tokenizer.encode(' é—');
  const seq = new Sequence({ promptIds: [5], sampling: greedy({ maxTokens: ids.length }) }, tokenizer, [EOS]);
  for (const id of ids) seq.step(pointing(id));
  const texts: string[] = [];
  for await (const e of seq) texts.push(e.text);
  assert.equal(texts.join(''), ' é—');
  assert.ok(texts.every((t) => !t.includes('\uFFFD')), `no replacement characters leaked: ${JSON.stringify(texts)}`);
});
