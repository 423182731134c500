import { Tensor } from 'onnxruntime-node';
import { buildDeltaFeeds, type DeltaLayer } from './graph/index.ts';
import type { DeltaBinding } from './types.ts';

export type { DeltaLayer };

/**
 * The per-row factor inputs of one batch as ORT tensors (layout and padding: graph/delta-feeds.ts).
 * The scheduler calls this only when the batch's membership changes, so decode steps reuse the tensors.
 */
export function deltaTensors(layers: readonly DeltaLayer[], rows: readonly (DeltaBinding | undefined)[]): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const [name, t] of buildDeltaFeeds(layers, rows)) feeds[name] = new Tensor('float32', t.data, t.dims);
  return feeds;
}
