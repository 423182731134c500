/** An adapter holding NaN or ±Inf anywhere would poison every row it is batched with: refuse it by tensor name. */
import { invalidAdapter } from './attach-target.ts';

export function assertFinite(id: string, tensor: string, data: ArrayLike<number>): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v)) {
      throw invalidAdapter(id, `tensor ${tensor} holds ${v} at flat index ${i}; adapters must be finite everywhere`, 'adapter_not_finite');
    }
  }
}

/**
 * Whether every value is finite, in one branch-free pass: x − x is 0 for a finite x and NaN for NaN or ±Inf,
 * and one NaN makes the sum NaN. Loaders fuse the same accumulation into their compile loops and call
 * `assertFinite` (which finds the index for the message) only when it reports a problem.
 */
export function allFinite(data: Float32Array): boolean {
  let acc = 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    acc += v - v;
  }
  return acc === 0;
}
