/**
 * Pack per-row factors into the feeds of a rewritten graph (see delta-branches.ts).
 *
 * For a batch of n rows and a layer with rows' ranks r_i, R = max_i r_i:
 *     A [n, d_in, R]:  A[i, :, 0:r_i] = a_i (row-major [d_in, r_i]), zeros elsewhere
 *     B [n, R, d_out]: B[i, 0:r_i, :] = b_i (row-major [r_i, d_out]), zeros elsewhere
 * so (x_i·A[i])·B[i] = (x_i·a_i)·b_i exactly: the zero padding adds exact zeros.
 * A row without a binding, or whose binding does not touch the layer, gets zeros (rank 0 when no row
 * in the batch touches it, which makes the branch free of FLOPs).
 */
import { PatchbayError } from '../../errors.ts';
import type { DeltaBinding } from '../types.ts';
import type { DeltaLayer } from './delta-branches.ts';

export interface FeedTensor {
  data: Float32Array;
  dims: [number, number, number];
}

export function buildDeltaFeeds(
  layers: readonly DeltaLayer[],
  rows: readonly (DeltaBinding | undefined)[],
): Map<string, FeedTensor> {
  const known = new Set(layers.map((l) => l.name));
  for (const row of rows) {
    for (const name of row?.layers.keys() ?? []) {
      if (!known.has(name)) {
        throw new PatchbayError({
          status: 500,
          code: 'delta_layer_unknown',
          message: `delta binding ${row!.key} has factors for ${name}, which has no delta branch in the loaded graph`,
        });
      }
    }
  }
  const n = rows.length;
  const feeds = new Map<string, FeedTensor>();
  for (const layer of layers) {
    let R = 0;
    for (const row of rows) R = Math.max(R, row?.layers.get(layer.name)?.rank ?? 0);
    const a = new Float32Array(n * layer.dIn * R);
    const b = new Float32Array(n * R * layer.dOut);
    rows.forEach((row, i) => {
      const f = row?.layers.get(layer.name);
      if (!f || f.rank === 0) return;
      if (f.a.length !== layer.dIn * f.rank || f.b.length !== f.rank * layer.dOut) {
        throw new PatchbayError({
          status: 500,
          code: 'delta_shape_mismatch',
          message: `delta binding ${row!.key}: ${layer.name} factors are ${f.a.length}/${f.b.length} floats, expected [${layer.dIn}, ${f.rank}] and [${f.rank}, ${layer.dOut}]`,
        });
      }
      const aBase = i * layer.dIn * R;
      if (f.rank === R) a.set(f.a, aBase);
      else for (let d = 0; d < layer.dIn; d++) a.set(f.a.subarray(d * f.rank, (d + 1) * f.rank), aBase + d * R);
      b.set(f.b, i * R * layer.dOut);
    });
    feeds.set(layer.aInput, { data: a, dims: [n, layer.dIn, R] });
    feeds.set(layer.bInput, { data: b, dims: [n, R, layer.dOut] });
  }
  return feeds;
}
