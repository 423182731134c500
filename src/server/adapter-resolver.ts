/**
 * The `ModelResolver` backed by the adapter registry: `model` names the base or an adapter, `adapters`
 * mixes several for one request (exact Task Arithmetic, the adapter named in `model` joining with weight 1).
 * Whatever resolves becomes one `DeltaBinding` that rides GenerationRequest.delta into the shared batch.
 */
import { badRequest } from '../errors.ts';
import { deltaDisabled, type AdapterEntry, type AdapterRegistry, type WeightedId } from '../registry/adapter-registry.ts';
import type { GeneratorRegistry } from '../registry/generator-registry.ts';
import { generatorCard, resolveGenerated, wantsGenerator } from './generator-resolver.ts';
import {
  adapterNotFound,
  baseCard,
  modelNotFound,
  notAvailable,
  type BaseResolverOptions,
  type ModelCard,
  type ModelResolver,
  type Resolution,
} from './resolver.ts';
import { untilAborted } from './cancellable.ts';
import type { AttachFields } from './schemas.ts';
import { CombinationCache } from '../adapters/combination-cache.ts';
import type { PatchManager } from '../patches/patch-manager.ts';
import type { DeltaBinding } from '../runtime/types.ts';

export interface AdapterResolverOptions extends BaseResolverOptions {
  registry: AdapterRegistry;
  /** Serves the request field `patches` (dense per-request factors, see patches/patch-manager.ts). */
  patches?: PatchManager;
  /** Generators (HY-WU): `model` names one and `condition` selects its factors. */
  generators?: GeneratorRegistry;
}

/**
 * Nothing to unpin: evicting an adapter only drops the cache's reference, and a running sequence keeps its
 * factors alive through its own (see registry/resident-cache.ts).
 */
const release = () => {};

export function createAdapterResolver(opts: AdapterResolverOptions): ModelResolver {
  const base = baseCard(opts);
  const { registry, generators } = opts;
  // Adapter ⊕ patch bindings of recent requests (rebuilding one costs tens of ms, see combination-cache.ts).
  const combinations = new CombinationCache();
  const generatorCards = () => (generators?.enabled ? generators.list().map((e) => generatorCard(base, e)) : []);
  // `root` is the id, not the server path vLLM shows: /v1/models is public, paths are for /admin/adapters.
  const card = (e: AdapterEntry): ModelCard => ({ ...base, id: e.id, created: e.created, root: e.id, parent: base.id });

  return {
    list() {
      // A server without delta branches cannot serve adapters, so it does not advertise them.
      return [{ ...base }, ...(registry.enabled ? registry.list().map(card) : []), ...generatorCards()];
    },

    get(id) {
      if (id === base.id) return { ...base };
      const entry = registry.enabled ? registry.get(id) : undefined;
      const generator = generators?.enabled ? generators.get(id) : undefined;
      return entry ? card(entry) : generator && generatorCard(base, generator);
    },

    async resolve(req: AttachFields, signal?: AbortSignal): Promise<Resolution> {
      if (req.patches != null && !opts.patches) throw notAvailable('patches');
      if (wantsGenerator(req, generators)) return resolveGenerated(req, base.id, generators, registry, signal);
      const parts: WeightedId[] = [];
      const named = req.model === base.id ? undefined : registry.get(req.model);
      if (req.model !== base.id) {
        if (!named) throw modelNotFound(req.model);
        parts.push({ id: named.id, weight: 1, param: 'model' });
      }
      (req.adapters ?? []).forEach((a, i) => {
        if (!registry.has(a.id)) {
          throw adapterNotFound(a.id, `adapters[${i}].id`);
        }
        // The schema already demands finite numbers; checked again because NaN would poison every row.
        if (!Number.isFinite(a.weight)) throw badRequest(`weight must be a finite number`, `adapters[${i}].weight`);
        parts.push({ id: a.id, weight: a.weight, param: `adapters[${i}].id` });
      });
      // Per-request patches: validated before any adapter loads, so a bad patch entry costs nothing.
      const patched = req.patches ? opts.patches!.binding(req.patches) : undefined;
      if (parts.length === 0) {
        return patched ? { modelId: base.id, kind: 'patched', delta: patched, editSeq: 0, release } : { modelId: base.id, kind: 'base', editSeq: 0, release };
      }
      if (!registry.enabled) throw deltaDisabled(named ? 'model' : 'adapters');

      // A client that leaves during an adapter load stops waiting at once; the load itself is shared.
      const adapters = await untilAborted(registry.combination(parts), signal);
      const delta: DeltaBinding = patched
        ? combinations.combine(adapters, patched)
        : adapters;
      // Read after loading: a directory adapter's kind is known only once it loaded.
      const kind = req.adapters || patched ? 'combination' : (registry.get(req.model)?.kind ?? 'adapter');
      return { modelId: req.model, kind, delta, editSeq: 0, release };
    },
  };
}
