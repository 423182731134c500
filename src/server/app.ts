/**
 * Assembles the HTTP application from explicit dependencies (no globals, no env reads), so `main.ts`,
 * tests and benchmarks build the same app. Middleware order: request id + access log/metrics first (they
 * see every response, errors included), then the admin guard (before any body is read), then the body
 * limit, then the routes; one error handler.
 */
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { ADMIN_PATHS, adminAuth } from './auth.ts';
import { limitBody } from './body-limit.ts';
import type { AppEnv } from './env.ts';
import { notFoundHandler, onError } from './errors.ts';
import { observe } from './logging.ts';
import type { ServerMetrics } from './metrics.ts';
import { adminAdapterRoutes } from './routes/admin-adapters.ts';
import { adminPatchRoutes } from './routes/admin-patches.ts';
import { adminMergeRoutes } from './routes/admin-merges.ts';
import { adminEditRoutes } from './routes/admin-edits.ts';
import { adminGeneratorRoutes } from './routes/admin-generators.ts';
import { chatRoute } from './routes/chat.ts';
import { completionsRoute } from './routes/completions.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoute } from './routes/metrics.ts';
import { modelsRoute } from './routes/models.ts';
import { tokenizeRoutes } from './routes/tokenize.ts';
import { TENANT_PATHS, tenantAuth } from './tenants/tenant-auth.ts';
import type { Tenancy } from './tenants/tenancy.ts';
import type { ServingState } from './state.ts';

export interface AppDeps {
  state: ServingState;
  metrics: ServerMetrics;
  logger: Logger;
  /** Larger request bodies get a 413 before they are buffered; a function when it is derived from the model. */
  maxBodyBytes: number | (() => number);
  /** Bearer token for the admin routes; unset switches them off (403). */
  adminToken?: string | undefined;
  /** Tenant keys, limits and the rank cap; with `tenancy.store` the public routes need a tenant key. */
  tenancy?: Tenancy | undefined;
  /**
   * Where `/metrics` is: `public` (default), `admin` (behind the admin token: keys mode without a separate
   * listener, since metrics name adapters and tenants), or `none` (served by a separate admin listener).
   */
  metricsAccess?: 'public' | 'admin' | 'none';
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use(observe(deps.logger, deps.metrics));
  const guard = adminAuth(deps.adminToken);
  for (const path of ADMIN_PATHS) app.use(path, guard);
  const access = deps.metricsAccess ?? 'public';
  if (access === 'admin') app.use('/metrics', guard);
  // Keys mode: callers are identified before any body is read.
  const store = deps.tenancy?.store;
  if (store) {
    const auth = tenantAuth(store, deps.tenancy?.metrics);
    for (const path of TENANT_PATHS) app.use(path, auth);
  }
  const maxBody = deps.maxBodyBytes;
  app.use(limitBody(typeof maxBody === 'number' ? () => maxBody : maxBody));

  healthRoutes(app, deps.state);
  if (access !== 'none') metricsRoute(app, deps.metrics);
  modelsRoute(app, deps.state);
  completionsRoute(app, deps);
  chatRoute(app, deps);
  tokenizeRoutes(app, deps.state);
  adminAdapterRoutes(app, deps.state);
  adminPatchRoutes(app, deps.state);
  adminMergeRoutes(app, deps.state);
  adminEditRoutes(app, deps.state);
  adminGeneratorRoutes(app, deps.state);

  app.onError(onError);
  app.notFound(notFoundHandler);
  return app;
}
