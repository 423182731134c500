/** `GET /v1/models` and `GET /v1/models/:id`: whatever the resolver can serve (today the base model). */
import type { Hono } from 'hono';
import type { AppEnv } from '../env.ts';
import { modelNotFound } from '../resolver.ts';
import type { ServingState } from '../state.ts';
import { visibleResolver } from '../tenants/tenancy.ts';

export function modelsRoute(app: Hono<AppEnv>, state: ServingState): void {
  app.get('/v1/models', function listModels(c) {
    return c.json({ object: 'list', data: visibleResolver(c, state.loaded()).list() });
  });

  // Ids may contain slashes (`org/name`, adapter paths), so the parameter takes the rest of the path.
  app.get('/v1/models/:id{.+}', function getModel(c) {
    const id = c.req.param('id');
    const card = visibleResolver(c, state.loaded()).get(id);
    if (!card) throw modelNotFound(id);
    return c.json(card);
  });
}
