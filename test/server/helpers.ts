/** Shared test wiring: the real runtime on the repo's tiny model, the real app, SSE parsing. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import { createApp } from '../../src/server/app.ts';
import type { AppEnv } from '../../src/server/env.ts';
import { createLogger } from '../../src/server/logging.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { createBaseResolver } from '../../src/server/resolver.ts';
import { ServingState } from '../../src/server/state.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MODEL_DIR = path.join(REPO_ROOT, 'models', 'tiny-gpt2');
export const MODEL_ID = 'tiny-gpt2';

export interface TestServer {
  app: Hono<AppEnv>;
  runtime: Runtime;
  state: ServingState;
  metrics: ServerMetrics;
  close(): Promise<void>;
}

export function buildApp(opts: { maxBodyBytes?: number } = {}) {
  const state = new ServingState();
  const metrics = new ServerMetrics();
  const app = createApp({ state, metrics, logger: createLogger('silent'), maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024 });
  return { app, state, metrics };
}

export async function startTestServer(opts: { maxBodyBytes?: number } = {}): Promise<TestServer> {
  const { app, state, metrics } = buildApp(opts);
  // Wired as main.ts wires it, so the step metrics are exercised too.
  const runtime = await loadRuntime({ modelDir: MODEL_DIR, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: 1, onStep: (step) => metrics.recordStep(step) });
  const { model } = runtime;
  state.markReady({ runtime, resolver: createBaseResolver({ id: model.id, contextLength: model.contextLength, created: 1 }) });
  metrics.watchScheduler(() => runtime.scheduler);
  return { app, runtime, state, metrics, close: () => runtime.close() };
}

export function post(app: Hono<AppEnv>, route: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return Promise.resolve(
    app.request(route, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    }),
  );
}

export interface ParsedSSE {
  /** Every `data:` payload except `[DONE]`, JSON-parsed, in order. */
  chunks: Record<string, unknown>[];
  /** Whether the stream ended with `data: [DONE]` as its last event. */
  done: boolean;
}

/** Strict about framing: every event is exactly one `data: …` line followed by a blank line. */
export function parseSSE(text: string): ParsedSSE {
  if (!text.endsWith('\n\n')) throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(text.slice(-40))}`);
  const events = text.slice(0, -2).split('\n\n');
  const chunks: Record<string, unknown>[] = [];
  let done = false;
  for (const event of events) {
    if (!event.startsWith('data: ') || event.includes('\n')) throw new Error(`bad SSE event: ${JSON.stringify(event)}`);
    const data = event.slice('data: '.length);
    if (done) throw new Error('data after [DONE]');
    if (data === '[DONE]') done = true;
    else chunks.push(JSON.parse(data) as Record<string, unknown>);
  }
  return { chunks, done };
}

/** Reads one sample's value from Prometheus text output, e.g. `metric('x_total', {route: '/v1/…'})`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([\w:]+)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}
