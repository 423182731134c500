import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogitsProcessor } from '../../src/runtime/logits-processors.ts';

const logits = () => new Float32Array([2, -1, 0.5, 3, -2]);

test('nothing active: no processor (the row is sampled uncopied)', () => {
  assert.equal(LogitsProcessor.create({ presencePenalty: 0, frequencyPenalty: 0, repetitionPenalty: 1 }, [1, 2], [0]), undefined);
  assert.equal(LogitsProcessor.create({ minTokens: 3 }, [1], []), undefined);
});

test('presence and frequency penalties follow OpenAI: l − c·α_f − [c > 0]·α_p over generated tokens', () => {
  const p = LogitsProcessor.create({ presencePenalty: 0.5, frequencyPenalty: 0.25 }, [1, 1, 1], [])!;
  for (const t of [3, 3, 0]) p.observe(t);
  const input = logits();
  const out = p.apply(input);
  assert.deepEqual(Array.from(out), [2 - 0.25 - 0.5, -1, 0.5, 3 - 0.5 - 0.5, -2]);
  assert.deepEqual(Array.from(input), Array.from(logits()), 'the input row is not written');
});

test('repetition penalty divides positive and multiplies negative logits of prompt and output tokens', () => {
  const p = LogitsProcessor.create({ repetitionPenalty: 2 }, [1, 3], [])!;
  p.observe(4);
  assert.deepEqual(Array.from(p.apply(logits())), [2, -2, 0.5, 1.5, -4]);
});

test('logit_bias adds; min_tokens bans the enders until reached', () => {
  const p = LogitsProcessor.create({ logitBias: new Map([[1, 100], [3, -100]]), minTokens: 2 }, [], [0, 2])!;
  assert.deepEqual(Array.from(p.apply(logits())), [-Infinity, 99, -Infinity, -97, -2]);
  p.observe(1);
  p.observe(1);
  assert.deepEqual(Array.from(p.apply(logits())), [2, 99, 0.5, -97, -2]);
});
