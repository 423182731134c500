/**
 * Kubernetes probes. `/healthz` (liveness) only says the process answers; `/readyz` (readiness) is 200
 * only while new generations are admitted, so a loading or draining replica receives no traffic.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../env.ts';
import type { ServingState } from '../state.ts';

export function healthRoutes(app: Hono<AppEnv>, state: ServingState): void {
  app.get('/healthz', function healthz(c) {
    return c.json({ status: 'ok' });
  });

  app.get('/readyz', function readyz(c) {
    const phase = state.phase;
    const model = state.serving?.runtime.model.id;
    return c.json({ status: phase, ...(model ? { model } : {}) }, phase === 'ready' ? 200 : 503);
  });
}
