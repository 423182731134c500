/**
 * Bearer keys on the public routes when a keys file is configured (OpenAI's `Authorization: Bearer <key>`).
 * The caller's tenant is put on the context; the generation, models and tokenize routes then see only
 * that tenant's ids (guarded-resolver.ts). Without a keys file this middleware is not installed (open mode).
 */
import type { MiddlewareHandler } from 'hono';
import { PatchbayError } from '../../errors.ts';
import type { AppEnv } from '../env.ts';
import type { TenantMetrics } from './tenant-metrics.ts';
import type { TenantStore } from './tenant-store.ts';

/** Public routes that need a tenant key in keys mode (probes stay open; admin routes have their own token). */
export const TENANT_PATHS = ['/v1/completions', '/v1/chat/completions', '/v1/models', '/v1/models/*', '/tokenize', '/detokenize'] as const;

export function tenantAuth(store: TenantStore, metrics?: TenantMetrics): MiddlewareHandler<AppEnv> {
  return async function requireTenantKey(c, next) {
    const header = c.req.header('authorization');
    const m = header ? /^Bearer[ \t]+(\S+)\s*$/i.exec(header) : null;
    const tenant = m ? store.authenticate(m[1]!) : undefined;
    if (!tenant) {
      c.header('WWW-Authenticate', 'Bearer realm="patchbay"');
      throw new PatchbayError({
        status: 401,
        code: m ? 'invalid_api_key' : 'missing_authorization',
        message: m ? 'The API key is not valid.' : "This server needs an 'Authorization: Bearer <API key>' header.",
      });
    }
    c.set('tenant', tenant);
    c.get('logger').setBindings({ tenant: tenant.name });
    await next();
    metrics?.requests.inc({ tenant: tenant.name, status: String(c.res.status) });
  };
}
