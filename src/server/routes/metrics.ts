/** `GET /metrics`: Prometheus text exposition of the server's own registry. */
import type { Hono } from 'hono';
import type { AppEnv } from '../env.ts';
import type { ServerMetrics } from '../metrics.ts';

export function metricsRoute(app: Hono<AppEnv>, metrics: ServerMetrics): void {
  app.get('/metrics', async function scrape(c) {
    return c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType });
  });
}
