/**
 * Robustness patch administration (bearer token, see auth.ts): `GET /admin/patches`,
 * `POST /admin/patches {id, path}`, `POST /admin/patches/{id}/apply {alpha}`,
 * `POST /admin/patches/{id}/remove`. Apply and remove answer once the new base version serves (the
 * response names it); repeating one is a no-op that says so (`changed: false`).
 */
import type { Hono } from 'hono';
import { z } from 'zod';
import { PatchbayError } from '../../errors.ts';
import type { PatchManager } from '../../patches/patch-manager.ts';
import type { RwsPatch } from '../../patches/rws-patch.ts';
import type { SwapEvent } from '../../runtime/versions/base-versions.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import type { ServingState } from '../state.ts';

const RegisterBody = z.object({ id: z.string().min(1).max(128).regex(/^[\w.-]+$/, 'id may hold letters, digits, "_", "-" and "."'), path: z.string().min(1) });
const ApplyBody = z.object({ alpha: z.number().finite().default(1) });

function managerOf(state: ServingState): PatchManager {
  const m = state.loaded().patches;
  if (!m) throw new PatchbayError({ status: 400, code: 'not_available', message: 'This server cannot apply patches (no base versions).' });
  return m;
}

function view(m: PatchManager, p: RwsPatch) {
  const active = m.activePatches().find((a) => a.id === p.id);
  return {
    object: 'patch' as const,
    id: p.id,
    path: p.path,
    method: p.meta.method,
    corruption: p.meta.corruption,
    base_model: p.meta.baseModel,
    levels: p.meta.levels,
    layers: p.layers.map((l) => l.module),
    bytes: p.bytes,
    active: active !== undefined,
    alpha: active?.alpha ?? null,
  };
}

function swapView(swap: SwapEvent | undefined, version: number) {
  return swap
    ? { changed: true, base_version: swap.to, previous_version: swap.from, build_ms: Math.round(swap.buildMs * 10) / 10, drain_wait_ms: Math.round(swap.drainWaitMs * 10) / 10 }
    : { changed: false, base_version: version };
}

export function adminPatchRoutes(app: Hono<AppEnv>, state: ServingState): void {
  const version = () => state.loaded().runtime.versions?.current().id ?? 0;

  app.get('/admin/patches', function listPatches(c) {
    const m = managerOf(state);
    return c.json({ object: 'list', data: m.list().map((p) => view(m, p)), active: m.activePatches(), base_version: version() });
  });

  app.post('/admin/patches', async function registerPatch(c) {
    const m = managerOf(state);
    const body = await parseJsonBody(c, RegisterBody);
    return c.json(view(m, await m.registerAdmin(body.id, body.path)), 201);
  });

  app.post('/admin/patches/:id/apply', async function applyPatch(c) {
    const m = managerOf(state);
    const body = await parseJsonBody(c, ApplyBody);
    const id = c.req.param('id');
    const swap = await m.apply(id, body.alpha);
    return c.json({ ...view(m, m.get(id)!), ...swapView(swap, version()) });
  });

  app.post('/admin/patches/:id/remove', async function removePatch(c) {
    const m = managerOf(state);
    const id = c.req.param('id');
    const swap = await m.remove(id);
    return c.json({ ...view(m, m.get(id)!), ...swapView(swap, version()) });
  });
}
