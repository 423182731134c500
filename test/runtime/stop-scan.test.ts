import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StopScanner } from '../../src/runtime/stop-scan.ts';
import { seededRandom } from '../../src/runtime/sampler.ts';

/** Feeds `pieces` and returns [match position or -1, held after the last piece fed]. */
function scan(stops: string[], pieces: string[]): [number, number] {
  const s = new StopScanner(stops);
  for (const p of pieces) {
    const at = s.push(p);
    if (at >= 0) return [at, s.held];
  }
  return [-1, s.held];
}

/**
 * Reference, straight from the definition: the first end position e at which some stop is a suffix of
 * text[0, e), cut at e − (longest such stop); held = longest suffix of the text that is a prefix of a stop.
 */
function reference(stops: string[], text: string): { at: number; held: number } {
  for (let e = 1; e <= text.length; e++) {
    const done = stops.filter((s) => s.length > 0 && text.slice(0, e).endsWith(s));
    if (done.length > 0) return { at: e - Math.max(...done.map((s) => s.length)), held: -1 };
  }
  let held = 0;
  for (const s of stops) for (let n = 1; n <= Math.min(s.length, text.length); n++) if (text.endsWith(s.slice(0, n))) held = Math.max(held, n);
  return { at: -1, held };
}

test('finds the earliest completed stop string and cuts at its start', () => {
  assert.equal(scan(['\n\n', 'END'], ['abc END x\n\n'])[0], 4);
  assert.equal(scan(['\n\n', 'END'], ['nothing here'])[0], -1);
  // A stop straddling two pieces.
  assert.equal(scan(['STOP'], ['abcST', 'OP'])[0], 3);
  // Of stops completing at the same character, the longest wins.
  assert.equal(scan(['c', 'abc'], ['xxabc'])[0], 2);
});

test('holds back a suffix that may start a stop string', () => {
  assert.equal(scan(['END'], ['hello EN'])[1], 2);
  assert.equal(scan(['END'], ['hello E'])[1], 1);
  assert.equal(scan(['END'], ['hello'])[1], 0);
  assert.equal(scan([], ['abc'])[1], 0);
  // The held suffix follows failure links: "aab" after "aaab" → prefix "aab" of "aabx".
  assert.equal(scan(['aabx'], ['aaab'])[1], 3);
});

test('agrees with the definition on random stops, texts and token splits (fixed seed)', () => {
  const rand = seededRandom(1234);
  const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
  for (let trial = 0; trial < 2000; trial++) {
    const stops = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => pick('ab', 1 + Math.floor(rand() * 5)));
    const text = pick('abc', Math.floor(rand() * 30));
    const pieces: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = 1 + Math.floor(rand() * 4);
      pieces.push(text.slice(i, i + n));
      i += n;
    }
    const want = reference(stops, text);
    const [at, held] = scan(stops, pieces);
    assert.equal(at, want.at, `stops ${JSON.stringify(stops)} text ${JSON.stringify(text)}`);
    if (at < 0) assert.equal(held, want.held, `held: stops ${JSON.stringify(stops)} text ${JSON.stringify(text)}`);
  }
});

test('adversarial stop strings: state moves stay linear in the text (at most 2 per character)', () => {
  // Stops built so the old per-token suffix test did Θ(L²) work: long runs of 'a' that almost match.
  const L = 256;
  const stops = ['a'.repeat(L - 1) + 'b', 'a'.repeat(L - 2) + 'ba', 'ab'.repeat(L / 2 - 1) + 'c', 'a'.repeat(L - 1) + 'c'];
  for (const text of ['a'.repeat(4000), 'ab'.repeat(2000), ('a'.repeat(L - 2) + 'c').repeat(16)]) {
    const s = new StopScanner(stops);
    for (let i = 0; i < text.length; i += 3) assert.equal(s.push(text.slice(i, i + 3)), -1);
    assert.ok(s.steps <= 2 * text.length, `${s.steps} state moves for ${text.length} characters`);
  }
  // Per character, not per token: one piece of 4000 characters costs the same bound.
  const whole = new StopScanner(stops);
  whole.push('a'.repeat(4000));
  assert.ok(whole.steps <= 2 * 4000, `${whole.steps} state moves`);
});
