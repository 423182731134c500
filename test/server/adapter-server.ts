/** A real runtime + adapter registry + app, wired exactly as main.ts does (createAdapterServing). */
import { tmpdir } from 'node:os';
import type { Hono } from 'hono';
import type { AdapterRegistry } from '../../src/registry/adapter-registry.ts';
import type { GeneratorRegistry } from '../../src/registry/generator-registry.ts';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import type { DeltaSelection } from '../../src/runtime/graph/index.ts';
import { createAdapterServing } from '../../src/server/adapter-serving.ts';
import { createApp } from '../../src/server/app.ts';
import type { AppEnv } from '../../src/server/env.ts';
import { createLogger } from '../../src/server/logging.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { ServingState } from '../../src/server/state.ts';
import { modelDir } from '../registry/fixtures.ts';

export interface AdapterServer {
  app: Hono<AppEnv>;
  state: ServingState;
  metrics: ServerMetrics;
  runtime: Runtime;
  registry: AdapterRegistry;
  generators: GeneratorRegistry;
  /** Another app on the same state, built without an admin token. */
  appWithoutToken: Hono<AppEnv>;
  close(): Promise<void>;
}

export interface AdapterServerOptions {
  model: 'tiny-gpt2' | 'tiny-llama';
  adapterDir: string;
  adminToken?: string;
  deltaTargets?: DeltaSelection | 'none';
  cacheBytes?: number;
  /** PATCHBAY_ADAPTER_ROOTS; default: the system temp dir, where the tests write adapters to register. */
  adapterRoots?: readonly string[];
  /** PATCHBAY_DATA_DIR for named merge recipes; unset = in memory only. */
  dataDir?: string;
  failureTtlMs?: number;
  /** Build the adapters' reduced-branch session before serving (AdapterServingOptions.branchesAhead). */
  branchesAhead?: boolean;
}

export async function startAdapterServer(opts: AdapterServerOptions): Promise<AdapterServer> {
  const state = new ServingState();
  const metrics = new ServerMetrics();
  const logger = createLogger('silent');
  const app = createApp({ state, metrics, logger, maxBodyBytes: 1 << 20, adminToken: opts.adminToken });
  const appWithoutToken = createApp({ state, metrics: new ServerMetrics(), logger, maxBodyBytes: 1 << 20 });
  const runtime = await loadRuntime({
    modelDir: modelDir(opts.model),
    device: 'cpu',
    maxBatch: 8,
    maxQueue: 64,
    threads: 1,
    ...(opts.deltaTargets ? { deltaSelection: opts.deltaTargets } : {}),
    onStep: (step) => metrics.recordStep(step),
  });
  const serving = await createAdapterServing({
    runtime,
    rewrite: runtime.rewrite,
    deltaTargets: opts.deltaTargets,
    adapterDir: opts.adapterDir,
    adapterRoots: opts.adapterRoots ?? [tmpdir()],
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.failureTtlMs !== undefined ? { failureTtlMs: opts.failureTtlMs } : {}),
    baseOnnxPath: runtime.model.onnxPath,
    cacheBytes: opts.cacheBytes ?? 64 << 20,
    ...(opts.branchesAhead ? { branchesAhead: true } : {}),
    metrics,
    logger,
    created: 1,
  });
  state.markReady(serving);
  metrics.watchScheduler(() => runtime.scheduler);
  return {
    app,
    state,
    metrics,
    runtime,
    registry: serving.adapters,
    generators: serving.generators,
    appWithoutToken,
    async close() {
      serving.adapters.close();
      await serving.generators.close();
      await runtime.close();
    },
  };
}

export function request(app: Hono<AppEnv>, method: string, route: string, body?: unknown, token?: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const withBody = body !== undefined && method !== 'GET' && method !== 'DELETE';
  return Promise.resolve(app.request(route, { method, headers, ...(withBody ? { body: JSON.stringify(body) } : {}) }));
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}
