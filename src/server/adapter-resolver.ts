/**
 * The `ModelResolver` backed by the adapter registry: `model` names the base or an adapter, `adapters`
 * mixes several for one request (exact Task Arithmetic, the adapter named in `model` joining with weight 1).
 * Whatever resolves becomes one `DeltaBinding` that rides GenerationRequest.delta into the shared batch.
 */
import { badRequest, notFound } from '../errors.ts';
import { deltaDisabled, type AdapterEntry, type AdapterRegistry, type WeightedId } from '../registry/adapter-registry.ts';
import {
  baseCard,
  modelNotFound,
  notAvailable,
  type BaseResolverOptions,
  type ModelCard,
  type ModelResolver,
  type Resolution,
} from './resolver.ts';
import type { AttachFields } from './schemas.ts';

export interface AdapterResolverOptions extends BaseResolverOptions {
  registry: AdapterRegistry;
}

/**
 * Nothing to unpin: evicting an adapter only drops the cache's reference, and a running sequence keeps its
 * factors alive through its own (see registry/resident-cache.ts).
 */
const release = () => {};

export function createAdapterResolver(opts: AdapterResolverOptions): ModelResolver {
  const base = baseCard(opts);
  const { registry } = opts;
  // `root` is the id, not the server path vLLM shows: /v1/models is public, paths are for /admin/adapters.
  const card = (e: AdapterEntry): ModelCard => ({ ...base, id: e.id, created: e.created, root: e.id, parent: base.id });

  return {
    list() {
      // A server without delta branches cannot serve adapters, so it does not advertise them.
      return [{ ...base }, ...(registry.enabled ? registry.list().map(card) : [])];
    },

    get(id) {
      if (id === base.id) return { ...base };
      const entry = registry.enabled ? registry.get(id) : undefined;
      return entry && card(entry);
    },

    async resolve(req: AttachFields): Promise<Resolution> {
      for (const field of ['patches', 'condition'] as const) if (req[field] != null) throw notAvailable(field);
      const parts: WeightedId[] = [];
      const named = req.model === base.id ? undefined : registry.get(req.model);
      if (req.model !== base.id) {
        if (!named) throw modelNotFound(req.model);
        parts.push({ id: named.id, weight: 1, param: 'model' });
      }
      (req.adapters ?? []).forEach((a, i) => {
        if (!registry.has(a.id)) {
          throw notFound(`adapter '${a.id}' does not exist; see GET /v1/models`, `adapters[${i}].id`, 'adapter_not_found');
        }
        // The schema already demands finite numbers; checked again because NaN would poison every row.
        if (!Number.isFinite(a.weight)) throw badRequest(`weight must be a finite number`, `adapters[${i}].weight`);
        parts.push({ id: a.id, weight: a.weight, param: `adapters[${i}].id` });
      });
      if (parts.length === 0) return { modelId: base.id, kind: 'base', editSeq: 0, release };
      if (!registry.enabled) throw deltaDisabled(named ? 'model' : 'adapters');

      const delta = await registry.combination(parts);
      // Read after loading: a directory adapter's kind is known only once it loaded.
      const kind = req.adapters ? 'combination' : (registry.get(req.model)?.kind ?? 'adapter');
      return { modelId: req.model, kind, delta, editSeq: 0, release };
    },
  };
}
