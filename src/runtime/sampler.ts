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
 */
export class Sampler {
  private readonly random: () => number;

  constructor(private readonly params: SamplingParams) {
    this.random = seededRandom(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  next(logits: Float32Array): number {
    const { temperature, topK, topP } = this.params;
    if (temperature <= 0) return argmax(logits);
    const order = candidateOrder(logits, topK);
    const max = logits[order[0]!]!;
    const probs = new Float64Array(order.length);
    let total = 0;
    for (let i = 0; i < order.length; i++) {
      probs[i] = Math.exp((logits[order[i]!]! - max) / temperature);
      total += probs[i]!;
    }
    let kept = order.length;
    if (topP < 1) {
      let mass = 0;
      for (let i = 0; i < order.length; i++) {
        mass += probs[i]! / total;
        if (mass >= topP) {
          kept = i + 1;
          break;
        }
      }
    }
    let keptTotal = 0;
    for (let i = 0; i < kept; i++) keptTotal += probs[i]!;
    let u = this.random() * keptTotal;
    for (let i = 0; i < kept; i++) {
      u -= probs[i]!;
      if (u <= 0) return order[i]!;
    }
    return order[kept - 1]!;
  }
}

/** Token ids sorted by descending logit, cut to the top k when k > 0. */
function candidateOrder(logits: Float32Array, topK: number): number[] {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return topK > 0 ? ids.slice(0, topK) : ids;
}
