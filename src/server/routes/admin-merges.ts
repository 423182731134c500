/**
 * Named merges: `POST /admin/merges` creates a virtual adapter from registered ones (Task Arithmetic or MWA,
 * optionally re-factored to a rank), `DELETE /admin/merges/{id}` removes it. The answer states the weights
 * actually used (normalised for MWA, with each metric and where it was read) and, with `rank`, the relative
 * Frobenius error per module and overall. Recipes persist in PATCHBAY_DATA_DIR/merges.json.
 */
import type { Hono } from 'hono';
import { MergeRequest } from '../../registry/merge-recipe.ts';
import { planMerge } from '../../registry/merge-plan.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import type { ServingState } from '../state.ts';
import { registryOf, view } from './admin-adapters.ts';

export function adminMergeRoutes(app: Hono<AppEnv>, state: ServingState): void {
  app.post('/admin/merges', async function createMerge(c) {
    const registry = registryOf(state);
    const body = await parseJsonBody(c, MergeRequest);
    const recipe = await planMerge(registry, body);
    const entry = await registry.createMerge(recipe);
    return c.json({ ...view(registry, entry), object: 'merge' as const }, 201);
  });

  app.delete('/admin/merges/:id', async function deleteMerge(c) {
    const entry = await registryOf(state).deleteMerge(c.req.param('id'), 'id');
    return c.json({ object: 'merge', id: entry.id, deleted: true });
  });
}
