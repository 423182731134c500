/**
 * Process entry point: configuration → HTTP listening at once (so `/healthz` answers and `/readyz` says
 * 503 while the model loads) → runtime → ready. SIGTERM/SIGINT drain: readiness drops, new generations get
 * 503, in-flight ones (streams included) finish, then the server and runtime close and the process exits 0.
 */
import { createServer, type Server } from 'node:http';
import { basename } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { loadRuntime, type Runtime } from './runtime/index.ts';
import { memoryBudget } from './runtime/memory-budget.ts';
import { createAdapterServing } from './server/adapter-serving.ts';
import { createApp } from './server/app.ts';
import { createMetricsApp } from './server/metrics-app.ts';
import { TenantLimiter } from './server/tenants/tenant-limits.ts';
import { TenantMetrics } from './server/tenants/tenant-metrics.ts';
import { TenantStore } from './server/tenants/tenant-store.ts';
import type { Tenancy } from './server/tenants/tenancy.ts';
import { defaultBodyBytes } from './server/body-limit.ts';
import { EditService } from './edits/edit-service.ts';
import { EditError } from './edits/errors.ts';
import { DEFAULT_EDIT_SETTINGS } from './edits/settings.ts';
import { createLogger } from './server/logging.ts';
import { ServerMetrics } from './server/metrics.ts';
import { ServingState } from './server/state.ts';
import { traceSwap } from './telemetry/base-spans.ts';
import { startTracing } from './telemetry/tracing.ts';

/** After the drain, responses still flushing their last bytes get this long before sockets are cut. */
const CLOSE_GRACE_MS = 5_000;

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`patchbay: ${err.message}\n`);
    process.exit(2);
  }
}

/** Keys mode when PATCHBAY_KEYS_FILE is set (a bad file stops the start); open mode, said loudly, otherwise. */
function startTenancy(): Tenancy {
  let store: TenantStore | undefined;
  if (config.keysFile) {
    try {
      store = new TenantStore({ path: config.keysFile, logger });
    } catch (err) {
      process.stderr.write(`patchbay: PATCHBAY_KEYS_FILE: ${(err as Error).message}\n`);
      process.exit(2);
    }
    logger.info({ keysFile: config.keysFile, tenants: store.tenants.map((t) => t.name) }, 'keys mode: public routes need a tenant API key');
    process.on('SIGHUP', () => store!.reload('SIGHUP'));
  } else {
    logger.warn('open mode: no PATCHBAY_KEYS_FILE, so every caller may use every model and adapter (for local use only)');
  }
  const limiter = new TenantLimiter((tenant, reason) => tenantMetrics.rejected(tenant, reason));
  const tenantMetrics = new TenantMetrics(metrics.registry, () => limiter.inFlightAll());
  return { store, limiter, metrics: tenantMetrics, maxCombinedRank: config.maxCombinedRank };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    // close() stops accepting and ends the sockets idle right now; a socket whose response finishes later
    // would linger as a keep-alive until its timeout, so sweep idle ones until the server has closed.
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(cut);
      resolve();
    });
  });
}

const config = readConfig();
const logger = createLogger(config.logLevel);
// Before anything that starts spans; with no endpoint this registers nothing (the no-op tracer serves).
const tracing = startTracing({ endpoint: config.otlpEndpoint, serviceName: config.serviceName, logger });
const metrics = new ServerMetrics({ processMetrics: true });
const state = new ServingState();
/** Until the model (and so its context) is known, bodies are capped at 1 MiB; generations answer 503 anyway. */
let bodyBytes = config.maxBodyBytes ?? 1024 * 1024;
const tenancy = startTenancy();
const app = createApp({
  state,
  metrics,
  logger,
  maxBodyBytes: () => bodyBytes,
  adminToken: config.adminToken,
  tenancy,
  // Metrics name adapters and tenants: in keys mode they leave the public port or need the admin token.
  metricsAccess: config.metricsPort !== undefined ? 'none' : tenancy.store ? 'admin' : 'public',
});
const metricsServer = config.metricsPort === undefined ? undefined : createServer(getRequestListener(createMetricsApp(metrics).fetch));
metricsServer?.listen(config.metricsPort, config.metricsHost, () => {
  const address = metricsServer.address();
  logger.info({ address: typeof address === 'object' && address ? `http://${address.address}:${address.port}/metrics` : String(address) }, 'metrics listener');
});

const server = createServer(getRequestListener(app.fetch));
server.on('error', (err) => {
  logger.fatal({ err }, 'HTTP server failed');
  process.exit(1);
});
server.listen(config.port, config.host, () => {
  const address = server.address();
  const where = typeof address === 'object' && address ? `http://${address.address}:${address.port}` : String(address);
  logger.info({ address: where, modelDir: config.modelDir, device: config.device }, 'listening; loading model');
});

if (tracing.enabled) logger.info({ endpoint: config.otlpEndpoint, serviceName: config.serviceName }, 'exporting traces over OTLP/HTTP');

const loading: Promise<Runtime> = loadRuntime({
  modelDir: config.modelDir,
  ...(config.modelId ? { modelId: config.modelId } : {}),
  device: config.device,
  maxBatch: config.maxBatch,
  spinning: config.ortSpinning === 'on',
  maxQueue: config.maxQueue,
  ...(config.threads ? { threads: config.threads } : {}),
  ...(config.deltaTargets ? { deltaSelection: config.deltaTargets } : {}),
  plainSession: config.plainSession,
  branchSessions: config.branchSessions,
  wideSession: config.wideSession,
  wideMinRows: config.wideMinRows,
  onBranchSessionError: (err, layers) => logger.warn({ err, layers: layers.size }, 'could not build the session reduced to a batch\'s adapter layers; the full delta graph keeps serving them'),
  sessionWorkers: config.sessionWorkers,
  ...(config.nbitsAccuracy !== undefined ? { nbitsAccuracy: config.nbitsAccuracy } : {}),
  ...(config.kvBlock !== undefined ? { kvBlock: config.kvBlock } : {}),
  onStep: (step) => metrics.recordStep(step),
  onSwap(swap) {
    traceSwap(swap);
    metrics.base.recordSwap(swap);
    const { source, from, to, buildMs, switchMs, drainWaitMs, changed } = swap;
    if (swap.error) logger.error({ err: swap.error, source, from, to }, 'base version build failed; still serving the previous one');
    else logger.info({ source, from, to, buildMs: Math.round(buildMs), switchMs, drainWaitMs: Math.round(drainWaitMs), changed: changed.length }, 'base version switched');
  },
});

loading
  .then(async (runtime) => {
    const { model } = runtime;
    const serving = await createAdapterServing({
      runtime,
      rewrite: runtime.rewrite,
      deltaTargets: config.deltaTargets,
      // An adapter's base_model_name_or_path may name the checkpoint directory rather than the served id.
      baseModelNames: [basename(model.dir), ...(model.nameOrPath ? [model.nameOrPath] : [])],
      adapterDir: config.adapterDir,
      ...(config.adapterRoots ? { adapterRoots: config.adapterRoots } : {}),
      failureTtlMs: config.adapterFailureTtlMs,
      dataDir: config.dataDir,
      baseOnnxPath: model.onnxPath,
      cacheBytes: config.cacheBytes,
      branchesAhead: config.branchSessionsAhead === 'on',
      metrics,
      logger,
    });
    const bound = runtime.tokenizer.promptBound;
    bodyBytes = config.maxBodyBytes ?? defaultBodyBytes(model.contextLength, bound);
    logger.info(
      { maxBodyBytes: bodyBytes, derived: config.maxBodyBytes === undefined, maxCharsPerToken: bound.maxCharsPerToken, bound: bound.reason },
      Number.isFinite(bound.maxCharsPerToken)
        ? 'prompts longer than the context allows are refused from their length, before tokenizing'
        : 'no characters-per-token bound for this tokenizer: prompts are checked only after tokenizing',
    );
    const budget = memoryBudget({
      ...model,
      maxBatch: config.maxBatch,
      maxQueue: config.maxQueue,
      maxCombinedRank: config.maxCombinedRank,
      deltaLayerDims: runtime.deltaLayers,
    });
    logger.info({ budgetBytes: budget, cacheBytes: config.cacheBytes }, 'memory bounds besides weights and the adapter cache (runtime/memory-budget.ts)');
    let edits: EditService | undefined;
    if (config.edits === 'auto') {
      try {
        edits = await EditService.create({
          model,
          tokenizer: runtime.tokenizer,
          versions: runtime.versions,
          dataDir: config.dataDir,
          settings: { ...DEFAULT_EDIT_SETTINGS, lambda: config.editLambda, ...(config.editMu !== undefined ? { mu: config.editMu } : {}), keys: config.editKeys, contexts: config.editContexts, ...(config.editLayers ? { layers: config.editLayers } : {}), ...(config.editAnchors !== undefined ? { anchorSubjects: config.editAnchors } : {}) },
          device: config.device,
          worker: config.editWorker,
          workerNice: config.editWorkerNice,
          ...(config.threads ? { threads: config.threads } : {}),
        });
        logger.info({ seq: edits.seq, layers: edits.layers, dataDir: config.dataDir }, 'knowledge edits ready');
      } catch (err) {
        // No statistics shipped with this model: serve without edits. Anything else (a log written under other
        // settings, an unknown layer) must not be silently ignored.
        if (!(err instanceof EditError && err.code === 'edits_unavailable')) throw err;
        logger.info({ reason: err.message }, 'knowledge edits unavailable');
      }
    }
    state.markReady({ ...serving, ...(edits ? { edits } : {}) });
    metrics.watchScheduler(() => runtime.scheduler);
    metrics.base.watch(() => runtime.versions);
    logger.info({ model: model.id, contextLength: model.contextLength, deltaLayers: runtime.deltaLayers.length, phase: state.phase }, 'model loaded');
  })
  .catch((err: unknown) => {
    logger.fatal({ err, modelDir: config.modelDir, adapterDir: config.adapterDir }, 'could not load the model or its adapters');
    process.exit(1);
  });

let stopping: Promise<void> | undefined;

/** Idempotent: a second signal while draining changes nothing (the orchestrator's SIGKILL is the backstop). */
function shutdown(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    logger.info({ signal }, 'already shutting down');
    return stopping;
  }
  logger.info({ signal }, 'shutting down: draining in-flight requests');
  state.startDraining();
  stopping = (async () => {
    const runtime = await loading;
    await runtime.scheduler.drain();
    await closeServer(server);
    if (metricsServer) await closeServer(metricsServer);
    tenancy.store?.close();
    state.serving?.adapters?.close();
    await state.serving?.edits?.close();
    await state.serving?.generators?.close();
    await runtime.close();
    // Last, so the spans of the drain itself are exported too.
    await tracing.shutdown();
    logger.info('stopped');
  })();
  stopping.then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
  return stopping;
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
