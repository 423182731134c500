/**
 * Structured logs (pino, JSON lines on stdout) and the per-request middleware that writes exactly one
 * access-log line and the request metrics. For SSE the line is written when the stream ends, so latency
 * and token counts describe the whole generation, not just the headers.
 */
import type { MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type { AppEnv } from './env.ts';
import type { ServerMetrics } from './metrics.ts';

export function createLogger(level: LevelWithSilent = 'info'): Logger {
  return pino({ level, base: { service: 'patchbay' } });
}

/** Route template (`/v1/models/:id{.+}`), not the raw path, so metric label cardinality stays bounded. */
function routeLabel(c: Parameters<MiddlewareHandler<AppEnv>>[0]): string {
  // Middleware registered with `use` matches as method ALL; the last other match is the handler that ran.
  const handler = matchedRoutes(c).findLast((r) => r.method !== 'ALL');
  return handler?.path ?? 'unmatched';
}

const REQUEST_ID = /^[\w\-=.]{1,128}$/;

export function observe(logger: Logger, metrics: ServerMetrics): MiddlewareHandler<AppEnv> {
  return async function observeRequest(c, next) {
    const startedAt = performance.now();
    // Honour a caller's id (a proxy's, for correlation) when it is safe to echo; otherwise mint one.
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
    const log = logger.child({ requestId });
    c.set('requestId', requestId);
    c.set('logger', log);
    c.set('startedAt', startedAt);
    c.header('x-request-id', requestId);

    await next();

    const finish = () => {
      const route = routeLabel(c);
      const ms = performance.now() - startedAt;
      const status = c.res.status;
      metrics.recordRequest(route, c.req.method, status, ms / 1000);
      const outcome = c.get('outcome');
      log.info(
        {
          route,
          method: c.req.method,
          status,
          latencyMs: Math.round(ms * 10) / 10,
          model: outcome?.model,
          promptTokens: outcome?.promptTokens,
          completionTokens: outcome?.completionTokens,
        },
        'request',
      );
    };
    const streamDone = c.get('streamDone');
    // Not awaited: awaiting here would hold back the streaming response until the stream had ended.
    if (streamDone) void streamDone.then(finish, finish);
    else finish();
  };
}
