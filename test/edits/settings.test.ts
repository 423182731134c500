import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeSafetensors } from '../../src/adapters/safetensors.ts';
import { resolveMu } from '../../src/edits/settings.ts';

test('μ: an explicit setting wins, else the statistics file records it, else 1; a bad record is refused', () => {
  assert.equal(resolveMu({ mu: 2 }, { mu: '10.0' }), 2);
  assert.equal(resolveMu({ mu: 0 }, { mu: '10.0' }), 0);
  assert.equal(resolveMu({}, { mu: '10.0' }), 10);
  assert.equal(resolveMu({}, {}), 1);
  assert.throws(() => resolveMu({}, { mu: 'ten' }), /not a finite number/);
  assert.throws(() => resolveMu({}, { mu: '-1' }), /not a finite number/);
});

test('the shipped tiny-gpt2 statistics cover layers 0 and 1 and record μ = 10 (the evaluated defaults)', () => {
  const stats = decodeSafetensors(new Uint8Array(readFileSync('models/tiny-gpt2/edit_stats.safetensors')));
  assert.deepEqual(JSON.parse(stats.header.metadata['layers']!), ['transformer.h.0.mlp.c_proj', 'transformer.h.1.mlp.c_proj']);
  assert.equal(resolveMu({}, stats.header.metadata), 10);
  // tiny-llama records none: its default stays 1.
  const llama = decodeSafetensors(new Uint8Array(readFileSync('models/tiny-llama/edit_stats.safetensors')));
  assert.equal(resolveMu({}, llama.header.metadata), 1);
});
