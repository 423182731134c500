/**
 * From a `POST /admin/merges` body to a recipe: every source must be a registered adapter (404 naming the
 * field otherwise; a merge of merges is refused), Task Arithmetic takes the given weights (default 1), MWA
 * reads each source's metric (merge-metrics.ts for the precedence) and normalises the weights.
 */
import { badRequest, notFound } from '../errors.ts';
import { adapterId } from './adapter-id.ts';
import type { AdapterRegistry } from './adapter-registry.ts';
import { sourceMetric } from './merge-metrics.ts';
import { checkRequest, mwaWeights, type MergeRecipe, type MergeRequest, type RecipeSource } from './merge-recipe.ts';

export async function planMerge(registry: AdapterRegistry, req: MergeRequest): Promise<MergeRecipe> {
  adapterId(req.id, 'id');
  checkRequest(req);
  const entries = req.sources.map((s, i) => {
    const e = registry.get(s.id);
    if (!e) throw notFound(`source adapter '${s.id}' does not exist; see GET /admin/adapters`, `sources[${i}].id`, 'adapter_not_found');
    if (e.source === 'merge') throw badRequest(`source '${s.id}' is itself a merge; list its adapters instead`, `sources[${i}].id`, 'merge_of_merge');
    return e;
  });
  let sources: RecipeSource[];
  const base = { id: req.id, method: req.method, pinned: req.pinned ?? false, created: Math.floor(Date.now() / 1000), ...(req.rank !== undefined ? { rank: req.rank } : {}) };
  if (req.method === 'task_arithmetic') {
    sources = req.sources.map((s) => ({ id: s.id, weight: s.weight ?? 1 }));
    return { ...base, sources };
  }
  const metric = req.metric ?? 'loss';
  const penalty = req.penalty ?? 1;
  const values = await Promise.all(
    req.sources.map(async (s, i) => {
      const found = await sourceMetric(entries[i]!.path, metric, metric === 'loss' ? s.loss : s.step);
      if (!found) {
        const field = metric === 'loss' ? 'loss' : 'step';
        throw badRequest(
          `source '${s.id}' has no ${metric === 'loss' ? 'loss' : 'step'}: it is not a Trainer checkpoint-N/ directory with trainer_state.json, its safetensors __metadata__ has none, and the request gives no sources[${i}].${field}`,
          `sources[${i}]`,
          'missing_metric',
        );
      }
      return found;
    }),
  );
  const weights = mwaWeights(values.map((v) => v.value), metric, penalty);
  sources = req.sources.map((s, i) => ({ id: s.id, weight: weights[i]!, metric: { name: metric, value: values[i]!.value, from: values[i]!.from } }));
  return { ...base, metric, penalty, sources };
}
