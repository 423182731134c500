/** The admin listener's app (`PATCHBAY_METRICS_PORT`): `/metrics` alone, off the public port. */
import { Hono } from 'hono';
import type { AppEnv } from './env.ts';
import { notFoundHandler, onError } from './errors.ts';
import type { ServerMetrics } from './metrics.ts';
import { metricsRoute } from './routes/metrics.ts';

export function createMetricsApp(metrics: ServerMetrics): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  metricsRoute(app, metrics);
  app.onError(onError);
  app.notFound(notFoundHandler);
  return app;
}
