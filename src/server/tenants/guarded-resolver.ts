/**
 * The resolver a request actually sees: the server's resolver narrowed to what the caller's tenant may use,
 * with the per-request bounds that hold for everyone (the combined rank of an `adapters: [...]` mix).
 *
 * A forbidden id answers exactly like an unknown one — the same constructors build both 404s, and the
 * decision is taken from the request and the tenant's patterns alone, never from whether the id exists — so
 * nothing about other tenants' adapters leaks, not even their existence. Forbidden ids are refused before
 * anything loads, so a tenant cannot make the server read another tenant's adapter from disk.
 */
import { badRequest, notFound } from '../../errors.ts';
import type { DeltaBinding } from '../../runtime/types.ts';
import { adapterNotFound, modelNotFound, type ModelCard, type ModelResolver, type Resolution } from '../resolver.ts';
import type { AttachFields } from '../schemas.ts';
import type { Tenant } from './keys-file.ts';
import type { TenantLimiter } from './tenant-limits.ts';

export interface Guards {
  /** The caller's tenant; undefined in open mode (no keys file). */
  tenant?: Tenant | undefined;
  limiter?: TenantLimiter | undefined;
  /** Most rank one request's delta may have in any layer (ranks of combined adapters add up). */
  maxCombinedRank?: number | undefined;
  /** An adapter's rank if already known (it is once loaded), to refuse an oversized mix before merging it. */
  rankOf?: ((id: string) => number | undefined) | undefined;
}

/** Largest per-layer rank of a delta: what its row is padded to in a batch (graph/delta-feeds.ts). */
export function maxRank(delta: DeltaBinding | undefined): number {
  let r = 0;
  for (const f of delta?.layers.values() ?? []) r = Math.max(r, f.rank);
  return r;
}

const rankTooLarge = (rank: number, cap: number, param: string) =>
  badRequest(
    `the adapters of this request add up to rank ${rank}, over this server's limit of ${cap} (PATCHBAY_MAX_COMBINED_RANK); combine fewer or smaller adapters`,
    param,
    'combined_rank_too_large',
  );

/** Canonical identity of a mix, for the per-tenant "new combinations per minute" quota. */
function mixKey(req: AttachFields, baseId: string): string {
  const parts = new Map<string, number>();
  if (req.model !== baseId) parts.set(req.model, 1);
  for (const a of req.adapters ?? []) parts.set(a.id, (parts.get(a.id) ?? 0) + a.weight);
  return [...parts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, w]) => `${id}*${w}`).join('+');
}

export function guardResolver(inner: ModelResolver, guards: Guards): ModelResolver {
  const { tenant, limiter, maxCombinedRank, rankOf } = guards;
  const baseId = () => inner.list().find((c) => c.parent === null)!.id;
  const visible = (card: ModelCard) => !tenant || (card.parent === null ? tenant.base : tenant.allows(card.id));

  return {
    list: () => inner.list().filter(visible),
    get(id) {
      const card = inner.get(id);
      return card && visible(card) ? card : undefined;
    },
    async resolve(req: AttachFields, signal?: AbortSignal): Promise<Resolution> {
      const base = baseId();
      if (tenant) {
        if (req.model === base ? !tenant.base : !tenant.allows(req.model)) throw modelNotFound(req.model);
        (req.adapters ?? []).forEach((a, i) => {
          if (!tenant.allows(a.id)) throw adapterNotFound(a.id, `adapters[${i}].id`);
        });
        (req.patches ?? []).forEach((p, i) => {
          if (!tenant.allowsPatch(p.id)) throw notFound(`patch '${p.id}' is not registered; see GET /admin/patches`, `patches[${i}].id`, 'patch_not_found');
        });
        if (req.adapters?.length && limiter) limiter.combination(tenant, mixKey(req, base));
      }
      const param = req.adapters?.length ? 'adapters' : 'model';
      if (maxCombinedRank !== undefined && rankOf && req.adapters?.length) {
        // Ranks add up under concatenation; the sum of each part's largest rank bounds every layer's rank.
        const ids = [...(req.model === base ? [] : [req.model]), ...req.adapters.map((a) => a.id)];
        const known = [...new Set(ids)].reduce((n, id) => n + (rankOf(id) ?? 0), 0);
        if (known > maxCombinedRank) throw rankTooLarge(known, maxCombinedRank, param);
      }
      const resolution = await inner.resolve(req, signal);
      const rank = maxRank(resolution.delta);
      if (maxCombinedRank !== undefined && rank > maxCombinedRank) {
        resolution.release();
        throw rankTooLarge(rank, maxCombinedRank, param);
      }
      return resolution;
    },
  };
}
