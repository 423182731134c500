import { descending, topKIndices } from './top-k.ts';
import type { SamplingParams } from './types.ts';

/** mulberry32: tiny, fast, and good enough to make `seed` reproducible across runs and machines. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! > bestValue) {
      bestValue = logits[i]!;
      best = i;
    }
  }
  return best;
}

/**
 * Picks the next token: greedy when temperature is 0, otherwise softmax(logits / T) restricted to the
 * top-k tokens and then to the smallest prefix whose mass reaches top_p (the order HF's warpers apply).
 * Nothing sorts the vocabulary: top-k is a bounded heap, top-p pops a lazily built heap only until the
 * mass is reached, and plain temperature sampling draws by one linear scan (top-k.ts).
 */
export class Sampler {
  private readonly random: () => number;

  constructor(private readonly params: Pick<SamplingParams, 'temperature' | 'topK' | 'topP' | 'seed'>) {
    this.random = seededRandom(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  next(logits: Float32Array): number {
    const { temperature, topK, topP } = this.params;
    if (temperature <= 0) return argmax(logits);
    if (topK > 0) return this.fromCandidates(logits, topKIndices(logits, topK));
    if (topP < 1) return this.nucleus(logits);
    return this.fromAll(logits);
  }

  /** Weights exp((l − max) / T) over the whole vocabulary, drawn by one scan in id order. */
  private fromAll(logits: Float32Array): number {
    const max = logits[argmax(logits)]!;
    const t = this.params.temperature;
    let total = 0;
    for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i]! - max) / t);
    let u = this.random() * total;
    let last = 0;
    for (let i = 0; i < logits.length; i++) {
      const w = Math.exp((logits[i]! - max) / t);
      if (w === 0) continue;
      last = i;
      u -= w;
      if (u <= 0) return i;
    }
    return last;
  }

  /** Top-p over the full vocabulary: the total mass needs one pass; the ordered prefix comes off a heap. */
  private nucleus(logits: Float32Array): number {
    const max = logits[argmax(logits)]!;
    const t = this.params.temperature;
    let total = 0;
    for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i]! - max) / t);
    const kept: number[] = [];
    const weights: number[] = [];
    let mass = 0;
    for (const id of descending(logits)) {
      const w = Math.exp((logits[id]! - max) / t);
      kept.push(id);
      weights.push(w);
      mass += w;
      if (mass / total >= this.params.topP) break;
    }
    return this.draw(kept, weights, mass);
  }

  /** Top-k candidates (descending), then top-p within them. */
  private fromCandidates(logits: Float32Array, order: Int32Array): number {
    const max = logits[order[0]!]!;
    const t = this.params.temperature;
    const weights = Array.from(order, (id) => Math.exp((logits[id]! - max) / t));
    const total = weights.reduce((a, b) => a + b, 0);
    let kept = order.length;
    if (this.params.topP < 1) {
      let mass = 0;
      for (let i = 0; i < order.length; i++) {
        mass += weights[i]! / total;
        if (mass >= this.params.topP) {
          kept = i + 1;
          break;
        }
      }
    }
    const ids = Array.from(order.subarray(0, kept));
    const w = weights.slice(0, kept);
    return this.draw(ids, w, w.reduce((a, b) => a + b, 0));
  }

  private draw(ids: readonly number[], weights: readonly number[], total: number): number {
    let u = this.random() * total;
    for (let i = 0; i < ids.length; i++) {
      u -= weights[i]!;
      if (u <= 0) return ids[i]!;
    }
    return ids[ids.length - 1]!;
  }
}
