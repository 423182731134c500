import { Tensor } from 'onnxruntime-node';
import type { DeltaBinding } from './types.ts';

/** A linear layer that the rewritten graph lets a request change: y += (x·A)·B with per-row A, B. */
export interface DeltaLayer {
  name: string;
  dIn: number;
  dOut: number;
}

export const deltaInputA = (layer: string) => `delta.${layer}.a`;
export const deltaInputB = (layer: string) => `delta.${layer}.b`;

/**
 * Builds the per-row factor inputs for one batch.
 *
 * Semantics: y[b] += (x[b] @ A[b]) @ B[b] with A [batch, dIn, r], B [batch, r, dOut], where r is the
 * largest rank any row brings to that layer and each row's factors are zero-padded to it (a row without
 * factors for the layer is all zeros, i.e. the base). r = 0 when no row touches the layer.
 */
export function buildDeltaFeeds(layers: readonly DeltaLayer[], rows: readonly (DeltaBinding | undefined)[]): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  const batch = rows.length;
  for (const layer of layers) {
    const factors = rows.map((r) => r?.layers.get(layer.name));
    const rank = Math.max(0, ...factors.map((f) => f?.rank ?? 0));
    const a = new Float32Array(batch * layer.dIn * rank);
    const b = new Float32Array(batch * rank * layer.dOut);
    factors.forEach((f, row) => {
      if (!f || f.rank === 0) return;
      const aBase = row * layer.dIn * rank;
      if (f.rank === rank) a.set(f.a, aBase);
      else for (let i = 0; i < layer.dIn; i++) a.set(f.a.subarray(i * f.rank, (i + 1) * f.rank), aBase + i * rank);
      b.set(f.b, row * rank * layer.dOut);
    });
    feeds[deltaInputA(layer.name)] = new Tensor('float32', a, [batch, layer.dIn, rank]);
    feeds[deltaInputB(layer.name)] = new Tensor('float32', b, [batch, rank, layer.dOut]);
  }
  return feeds;
}
