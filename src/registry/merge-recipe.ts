/**
 * A named merge is a recipe: which registered adapters, with which weights, and optionally a target rank.
 * Task Arithmetic (METHODS.md): ΔW = Σ λ_i·ΔW_i with the given weights (default 1, may be negative).
 * MWA (metrics-weighted averaging, Patchbay's documented formula): w_i ∝ (1/loss_i)^p for metric `loss`,
 * w_i ∝ step_i^p for metric `steps`, normalised to Σw = 1 (p = 0 is the uniform average), then applied
 * exactly as Task Arithmetic with λ_i = w_i. The weights actually used are stored in the recipe, so a restart
 * rebuilds the same merge even if the sources' metrics could no longer be read.
 */
import { z } from 'zod';
import { badRequest } from '../errors.ts';

export const MergeMethod = z.enum(['task_arithmetic', 'mwa']);
export const MergeMetric = z.enum(['loss', 'steps']);

export const MergeRequest = z.object({
  id: z.string().min(1),
  method: MergeMethod,
  sources: z
    .array(
      z.object({
        id: z.string().min(1),
        weight: z.number().finite().optional(),
        loss: z.number().finite().positive().optional(),
        step: z.number().finite().positive().optional(),
      }),
    )
    .min(1)
    .max(32),
  metric: MergeMetric.optional(),
  penalty: z.number().finite().min(0).max(64).optional(),
  rank: z.number().int().min(1).max(65536).optional(),
  pinned: z.boolean().optional(),
});
export type MergeRequest = z.infer<typeof MergeRequest>;

/** Where an MWA metric came from, in precedence order. */
export type MetricOrigin = 'trainer_state' | 'safetensors_metadata' | 'request';

export interface RecipeSource {
  id: string;
  /** The λ applied (normalised w for MWA). */
  weight: number;
  /** MWA only: the metric value the weight came from, and where it was read. */
  metric?: { name: 'loss' | 'steps'; value: number; from: MetricOrigin };
}

export interface TruncationReport {
  rank: number;
  /** Relative Frobenius error ‖ΔW − ΔW_r‖_F / ‖ΔW‖_F per module, and over all modules together. */
  modules: Record<string, number>;
  overall: number;
}

/** What is persisted (merges.json) and shown in GET /admin/adapters. */
export interface MergeRecipe {
  id: string;
  method: 'task_arithmetic' | 'mwa';
  metric?: 'loss' | 'steps';
  penalty?: number;
  rank?: number;
  pinned: boolean;
  sources: RecipeSource[];
  /** Unix seconds. */
  created: number;
  truncation?: TruncationReport;
}

/** MWA weights from metric values: (1/loss)^p or step^p, normalised to sum 1. */
export function mwaWeights(values: readonly number[], metric: 'loss' | 'steps', penalty: number): number[] {
  const raw = values.map((v) => (metric === 'loss' ? (1 / v) ** penalty : v ** penalty));
  const sum = raw.reduce((s, w) => s + w, 0);
  if (!(sum > 0) || !Number.isFinite(sum)) throw badRequest(`MWA weights cannot be normalised (sum ${sum}); use a smaller penalty`, 'penalty');
  return raw.map((w) => w / sum);
}

/** Checks that need no registry: method-specific fields and duplicates. */
export function checkRequest(req: MergeRequest): void {
  const seen = new Set<string>();
  req.sources.forEach((s, i) => {
    if (seen.has(s.id)) throw badRequest(`source '${s.id}' is listed twice; give it one weight`, `sources[${i}].id`, 'duplicate_source');
    seen.add(s.id);
    if (req.method === 'mwa' && s.weight !== undefined) {
      throw badRequest('MWA computes the weights from the metric; give loss or step instead of weight', `sources[${i}].weight`);
    }
  });
  if (req.method === 'task_arithmetic') {
    for (const f of ['metric', 'penalty'] as const) if (req[f] !== undefined) throw badRequest(`${f} applies to method mwa only`, f);
  }
}
