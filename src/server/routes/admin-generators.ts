/**
 * Generator administration: `GET /admin/generators` (each generator's manifest summary and example
 * conditions), `POST /admin/generators {id, path}` (validated by loading: manifest, base, shapes, a trial run;
 * a bad generator is a 400 that changes nothing) and `DELETE /admin/generators/{id}`.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { PatchbayError } from '../../errors.ts';
import { adapterId } from '../../registry/adapter-id.ts';
import type { GeneratorEntry, GeneratorRegistry } from '../../registry/generator-registry.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import type { ServingState } from '../state.ts';

const RegisterBody = z.object({ id: z.string().min(1), path: z.string().min(1) });

function generatorsOf(state: ServingState): GeneratorRegistry {
  const generators = state.loaded().generators;
  if (!generators) throw new PatchbayError({ status: 400, code: 'not_available', message: 'This server has no generator registry.' });
  return generators;
}

function view(generators: GeneratorRegistry, e: GeneratorEntry) {
  const m = e.manifest;
  return {
    object: 'generator' as const,
    id: e.id,
    path: e.path,
    source: e.source,
    created: e.created,
    base_model: m?.base_model ?? null,
    condition_dim: m?.condition_dim ?? null,
    rank: m?.rank ?? null,
    scale: m?.scale ?? null,
    targets: m?.targets ?? null,
    string_condition: m?.string_condition ?? null,
    examples: m?.examples ?? [],
    description: m?.description ?? null,
    loaded: generators.isLoaded(e.id),
    ...(m ? {} : { error: 'generator.json is missing or invalid; requests for it get the 400 that says why' }),
  };
}

export function adminGeneratorRoutes(app: Hono<AppEnv>, state: ServingState): void {
  app.get('/admin/generators', function listGenerators(c) {
    const generators = generatorsOf(state);
    return c.json({ object: 'list', data: generators.list().map((e) => view(generators, e)), delta_enabled: generators.enabled });
  });

  app.post('/admin/generators', async function registerGenerator(c) {
    const generators = generatorsOf(state);
    const body = await parseJsonBody(c, RegisterBody);
    const entry = await generators.register(adapterId(body.id, 'id'), body.path);
    return c.json(view(generators, entry), 201);
  });

  app.delete('/admin/generators/:id', async function deleteGenerator(c) {
    const entry = await generatorsOf(state).unregister(c.req.param('id'));
    return c.json({ object: 'generator', id: entry.id, deleted: true });
  });
}
