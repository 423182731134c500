/**
 * What the routes need from multi-tenancy, in one object: the keys (absent in open mode), the limits and
 * their metrics, and the per-request rank cap. `resolverFor` gives a request its narrowed resolver and
 * `admitTenant` its in-flight/token ticket; both are no-ops for what open mode does not configure.
 */
import type { Context } from 'hono';
import type { AppEnv } from '../env.ts';
import type { ModelResolver } from '../resolver.ts';
import type { Serving } from '../state.ts';
import { guardResolver } from './guarded-resolver.ts';
import type { Ticket, TenantLimiter } from './tenant-limits.ts';
import type { TenantMetrics } from './tenant-metrics.ts';
import type { TenantStore } from './tenant-store.ts';

export interface Tenancy {
  store?: TenantStore | undefined;
  limiter: TenantLimiter;
  metrics?: TenantMetrics | undefined;
  /** PATCHBAY_MAX_COMBINED_RANK; undefined = no cap. */
  maxCombinedRank?: number | undefined;
}

export function resolverFor(c: Context<AppEnv>, serving: Pick<Serving, 'resolver' | 'adapters'>, tenancy: Tenancy | undefined): ModelResolver {
  const tenant = c.get('tenant');
  if (!tenancy || (!tenant && tenancy.maxCombinedRank === undefined)) return serving.resolver;
  return guardResolver(serving.resolver, {
    tenant,
    limiter: tenancy.limiter,
    maxCombinedRank: tenancy.maxCombinedRank,
    rankOf: (id) => serving.adapters?.get(id)?.rank,
  });
}

/** For read-only routes (`/v1/models`, `/tokenize`): only the ids the caller's tenant may use exist. */
export function visibleResolver(c: Context<AppEnv>, serving: Pick<Serving, 'resolver'>): ModelResolver {
  const tenant = c.get('tenant');
  return tenant ? guardResolver(serving.resolver, { tenant }) : serving.resolver;
}

/** The caller's slot (429 if its tenant is at a limit); `done(tokens)` charges it. Undefined in open mode. */
export function admitTenant(c: Context<AppEnv>, tenancy: Tenancy | undefined): Ticket | undefined {
  const tenant = c.get('tenant');
  if (!tenant || !tenancy) return undefined;
  const ticket = tenancy.limiter.admit(tenant);
  return {
    done(tokens) {
      ticket.done(tokens);
      tenancy.metrics?.tokens.inc({ tenant: tenant.name, kind: 'total' }, tokens);
    },
  };
}
