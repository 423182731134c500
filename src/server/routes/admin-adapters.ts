/**
 * Adapter administration: Patchbay's `/admin/adapters` routes and vLLM's `/v1/load_lora_adapter` /
 * `/v1/unload_lora_adapter` (same bodies and plain-text success replies as vLLM, so its tooling works).
 * Authentication is the guard in auth.ts; registration validates by loading, so a bad adapter is a 400
 * that leaves the registry as it was.
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { PatchbayError } from '../../errors.ts';
import { adapterId } from '../../registry/adapter-id.ts';
import type { AdapterEntry, AdapterRegistry } from '../../registry/adapter-registry.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import type { ServingState } from '../state.ts';

const RegisterBody = z.object({ id: z.string().min(1), path: z.string().min(1), pinned: z.boolean().optional() });
/** vLLM also sends fields Patchbay has no use for (`load_inplace`, `lora_int_id`); they are ignored. */
const LoadLoraBody = z.looseObject({ lora_name: z.string().min(1), lora_path: z.string().min(1) });
const UnloadLoraBody = z.looseObject({ lora_name: z.string().min(1) });

export function registryOf(state: ServingState): AdapterRegistry {
  const registry = state.loaded().adapters;
  if (!registry) {
    throw new PatchbayError({ status: 400, code: 'not_available', message: 'This server has no adapter registry.' });
  }
  return registry;
}

export function view(registry: AdapterRegistry, e: AdapterEntry) {
  return {
    object: 'adapter' as const,
    id: e.id,
    path: e.source === 'merge' ? null : e.path,
    source: e.source,
    created: e.created,
    generation: e.generation,
    kind: e.kind ?? null,
    rank: e.rank ?? null,
    bytes: e.bytes ?? null,
    pinned: e.pinned,
    resident: registry.isResident(e.id),
    ...(e.recipe ? { recipe: e.recipe } : {}),
  };
}

export function adminAdapterRoutes(app: Hono<AppEnv>, state: ServingState): void {
  app.get('/admin/adapters', function listAdapters(c) {
    const registry = registryOf(state);
    return c.json({
      object: 'list',
      data: registry.list().map((e) => view(registry, e)),
      stats: registry.stats(),
      delta_enabled: registry.enabled,
    });
  });

  app.post('/admin/adapters', async function registerAdapter(c) {
    const registry = registryOf(state);
    const body = await parseJsonBody(c, RegisterBody);
    const entry = await registry.register(adapterId(body.id, 'id'), body.path, undefined, body.pinned ?? false);
    return c.json(view(registry, entry), 201);
  });

  app.delete('/admin/adapters/:id', async function deleteAdapter(c) {
    const entry = await registryOf(state).unregister(c.req.param('id'), 'id');
    return c.json({ object: 'adapter', id: entry.id, deleted: true });
  });

  app.post('/v1/load_lora_adapter', async function loadLoraAdapter(c) {
    const registry = registryOf(state);
    const body = await parseJsonBody(c, LoadLoraBody);
    await registry.register(adapterId(body.lora_name, 'lora_name'), body.lora_path, { id: 'lora_name', path: 'lora_path' });
    return c.text(`Success: LoRA adapter '${body.lora_name}' added successfully.`, 200);
  });

  app.post('/v1/unload_lora_adapter', async function unloadLoraAdapter(c) {
    const body = await parseJsonBody(c, UnloadLoraBody);
    await registryOf(state).unregister(body.lora_name, 'lora_name');
    return c.text(`Success: LoRA adapter '${body.lora_name}' removed successfully.`, 200);
  });
}
