/**
 * Stop-string scanning per generated token: the previous scan (re-test every held-back suffix against every
 * stop prefix, plus an indexOf over the tail, per token) vs the Aho–Corasick scanner (runtime/stop-scan.ts),
 * on adversarial stops (runs of one character that almost match) as the text grows to 4k characters.
 * Both are pure JS in one process; trials interleave the contenders. `npm run bench:stop-scan`.
 */
import { StopScanner } from '../src/runtime/stop-scan.ts';
import { median, row } from './lib/stats.ts';

/** The scan Patchbay used before stop-scan.ts (kept here only as the contender). */
class PreviousScan {
  constructor(private readonly stops: readonly string[]) {}
  firstMatch(text: string, from: number): number {
    let earliest = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop, Math.max(0, from - stop.length + 1));
      if (at >= 0 && (earliest < 0 || at < earliest)) earliest = at;
    }
    return earliest;
  }
  safeLength(text: string): number {
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > hold; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    return text.length - hold;
  }
}

const L = Number(process.env.STOP_LEN ?? 4000);
// A 'b' in the middle: every long prefix matches the all-'a' text up to the middle and then fails, so the
// previous scan pays O(L) per candidate length, O(L²) per stop and token.
const half = 'a'.repeat(L / 2 - 1);
const stops = [half + 'b' + half, half + 'c' + half, half + 'd' + half, half + 'e' + half];
const TOKENS = 1000;
const PIECE = 4; // characters per token

function previous(): number {
  const scan = new PreviousScan(stops);
  let text = '';
  let emitted = 0;
  const t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) {
    text += 'a'.repeat(PIECE);
    if (scan.firstMatch(text, emitted) >= 0) throw new Error('unexpected match');
    emitted = scan.safeLength(text);
  }
  return (performance.now() - t0) / TOKENS;
}

function ahoCorasick(): number {
  const scan = new StopScanner(stops);
  let text = '';
  const t0 = performance.now();
  for (let i = 0; i < TOKENS; i++) {
    const piece = 'a'.repeat(PIECE);
    text += piece;
    if (scan.push(piece) >= 0) throw new Error('unexpected match');
    void (text.length - scan.held);
  }
  return (performance.now() - t0) / TOKENS;
}

const prev: number[] = [];
const ac: number[] = [];
for (let trial = 0; trial < 5; trial++) {
  prev.push(previous());
  ac.push(ahoCorasick());
}
const w = [26, 12, 12, 12];
console.log(`stop strings: 4 × ~${L} chars, adversarial; ${TOKENS} tokens of ${PIECE} chars (text grows to ${TOKENS * PIECE}); 5 interleaved trials`);
console.log(row(['contender', 'ms/token', 'min', 'max'], w));
console.log(row(['previous (per-token scan)', median(prev), Math.min(...prev), Math.max(...prev)], w));
console.log(row(['Aho–Corasick', median(ac), Math.min(...ac), Math.max(...ac)], w));
console.log(`ratio previous / Aho–Corasick: ${(median(prev) / median(ac)).toFixed(0)}×`);
