/**
 * Compiling a merge recipe into factors: exact Task Arithmetic by concatenation (adapters/combine.ts), then,
 * when the recipe asks for a rank, each layer re-factored to rank ≤ r by truncated SVD (low-rank.ts), with
 * the relative Frobenius error reported per module and overall: √(Σ dropped s²) / √(Σ all s²).
 * Truncation runs on a worker thread (truncation-thread.ts: a dense SmolLM2-sized module takes on the order of
 * a second), so other requests keep decoding while an admin call builds a large merge; modules are sent one at
 * a time, which keeps one module's copies in flight.
 */
import { combineBindings, factorFootprint } from '../adapters/index.ts';
import type { DeltaBinding, LayerFactors } from '../runtime/types.ts';
import { relativeError } from './low-rank.ts';
import { truncateOffThread } from './truncation-thread.ts';
import type { TruncationReport } from './merge-recipe.ts';

export interface BuiltMerge {
  binding: DeltaBinding;
  bytes: number;
  rank: number;
  truncation?: TruncationReport;
}

export async function buildMerge(id: string, parts: readonly { binding: DeltaBinding; weight: number }[], rank?: number): Promise<BuiltMerge> {
  const exact = combineBindings(parts, id);
  if (rank === undefined) return { binding: exact, ...factorFootprint(exact.layers) };
  const layers = new Map<string, LayerFactors>();
  const modules: Record<string, number> = {};
  let tail = 0;
  let total = 0;
  for (const [name, f] of exact.layers) {
    const t = await truncateOffThread(f, rank);
    layers.set(name, t.factors);
    modules[name] = relativeError(t);
    tail += t.tailEnergy;
    total += t.totalEnergy;
  }
  const binding = { key: id, layers };
  return { binding, ...factorFootprint(layers), truncation: { rank, modules, overall: relativeError({ tailEnergy: tail, totalEnergy: total }) } };
}
