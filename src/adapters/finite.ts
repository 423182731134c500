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
