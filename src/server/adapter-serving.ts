/**
 * Builds what the server serves once the runtime is loaded: the attach target from the graph rewrite, the
 * adapter registry (scanned, its hooks wired to metrics, logs and spans) and the adapter resolver.
 * `main.ts` and the tests call this one function, so the tests exercise the production wiring.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { StringEmbeddingSource } from '../adapters/generator-condition.ts';
import { GENERATOR_MANIFEST } from '../adapters/generator-manifest.ts';
import { attachTarget } from '../adapters/index.ts';
import { badRequest } from '../errors.ts';
import { AdapterRegistry } from '../registry/adapter-registry.ts';
import { GeneratorRegistry } from '../registry/generator-registry.ts';
import { decodeModel } from '../runtime/graph/onnx.ts';
import { findTokenEmbedding, type TokenEmbedding } from '../runtime/graph/token-embedding.ts';
import { createPatchManager } from './patch-serving.ts';
import { AdapterStore } from '../registry/adapter-store.ts';
import { MergeStore } from '../registry/merge-store.ts';
import type { DeltaRewrite } from '../runtime/graph/delta-branches.ts';
import { DEFAULT_DELTA_SELECTION, type DeltaSelection } from '../runtime/graph/selection.ts';
import { traceEvict, traceGenerate, traceHit, traceLoad, traceMerge } from '../telemetry/adapter-spans.ts';
import { createAdapterResolver } from './adapter-resolver.ts';
import { prepareAdapterBranches } from './branches-ahead.ts';
import type { ServingRuntime } from './contract.ts';
import type { ServerMetrics } from './metrics.ts';
import type { Serving } from './state.ts';

export interface AdapterServingOptions {
  runtime: ServingRuntime;
  /** The runtime's graph rewrite; undefined when it runs without delta branches (adapters refused). */
  rewrite: Pick<DeltaRewrite, 'layers' | 'linearLayers'> | undefined;
  /** What PATCHBAY_DELTA_TARGETS asked for (undefined = the runtime default), named in adapter errors. */
  deltaTargets: DeltaSelection | 'none' | undefined;
  /** Names an adapter's `base_model_name_or_path` may give (besides the served model id). */
  baseModelNames?: readonly string[];
  adapterDir?: string;
  /** PATCHBAY_ADAPTER_ROOTS (default: the adapter dir). */
  adapterRoots?: readonly string[];
  failureTtlMs?: number;
  /** Named merge recipes persist here (merges.json); unset = merges live in memory only. */
  dataDir?: string;
  /** The base's ONNX file: its token-embedding table embeds generators' string conditions (read on first use). */
  baseOnnxPath?: string;
  cacheBytes: number;
  /**
   * Build the reduced-branch session of the adapters found at start before serving (branches-ahead.ts;
   * PATCHBAY_BRANCH_SESSIONS_AHEAD, default on in main.ts). Off or absent: built after their first steps.
   */
  branchesAhead?: boolean;
  metrics: ServerMetrics;
  logger: Logger;
  /** Unix seconds for the base model card. */
  created?: number;
}

export function selectionName(targets: DeltaSelection | 'none' | undefined): string {
  const name = (s: DeltaSelection | 'none') => (typeof s === 'string' ? s : s.join(','));
  return targets === undefined ? `${name(DEFAULT_DELTA_SELECTION)} (default)` : name(targets);
}

export async function createAdapterServing(opts: AdapterServingOptions): Promise<Serving & Required<Pick<Serving, 'adapters' | 'generators'>>> {
  const { model } = opts.runtime;
  const names = [...new Set([model.id, ...(opts.baseModelNames ?? [])])];
  const target = opts.rewrite ? attachTarget(opts.rewrite, selectionName(opts.deltaTargets), names) : undefined;
  const log = opts.logger.child({ component: 'adapters' });
  // Adapters and generators share one id space (`model`) and one byte budget (the registry's cache).
  const registry: AdapterRegistry = new AdapterRegistry({
    ...(opts.adapterDir ? { adapterDir: opts.adapterDir } : {}),
    ...(opts.adapterRoots ? { adapterRoots: opts.adapterRoots } : {}),
    ...(opts.failureTtlMs !== undefined ? { failureTtlMs: opts.failureTtlMs } : {}),
    maxBytes: opts.cacheBytes,
    target,
    reserved: [model.id],
    isTaken: (id) => generators.has(id),
    isForeign: (path) => existsSync(join(path, GENERATOR_MANIFEST)),
    onLoad(event) {
      traceLoad(event);
      opts.metrics.adapters.recordLoad(event);
      if (event.error) log.warn({ adapter: event.id, err: event.error }, 'adapter load failed');
      else log.info({ adapter: event.id, kind: event.kind, bytes: event.bytes, ms: Math.round(event.seconds * 1000) }, 'adapter loaded');
    },
    onMerge(event) {
      traceMerge(event);
      opts.metrics.adapters.recordMerge(event);
    },
    onHit: traceHit,
    onEvict(key, bytes, reason) {
      traceEvict(key, bytes, reason);
      log.debug({ key, bytes, reason }, 'adapter factors left host memory');
    },
  });
  const generators: GeneratorRegistry = new GeneratorRegistry({
    ...(opts.adapterDir ? { adapterDir: opts.adapterDir } : {}),
    ...(opts.adapterRoots ? { adapterRoots: opts.adapterRoots } : {}),
    target,
    cache: registry.residentCache,
    context: opts.baseOnnxPath ? { strings: stringSource(opts.runtime, opts.baseOnnxPath) } : {},
    reserved: [model.id],
    isTaken: (id) => registry.has(id),
    onLoad(event) {
      traceLoad(event);
      opts.metrics.adapters.recordLoad(event);
      if (event.error) log.warn({ generator: event.id, err: event.error }, 'generator load failed');
      else log.info({ generator: event.id, ms: Math.round(event.seconds * 1000) }, 'generator loaded');
    },
    onGenerate(event) {
      traceGenerate(event);
      opts.metrics.adapters.recordGenerate(event);
    },
  });
  const found = await registry.scan();
  for (const { id, reason } of registry.unfitAdapters()) log.warn({ adapter: id, reason }, 'adapter directory does not fit this base model; not offered');
  if (opts.dataDir) {
    // Admin registrations first (merges may name them as sources), each validated as the admin call was.
    const adapterStore = new AdapterStore(opts.dataDir);
    const { records, malformed } = await adapterStore.records();
    if (malformed.length > 0) log.warn({ file: adapterStore.file, malformed }, 'malformed adapter records skipped (dropped at the next write)');
    const reloaded = await registry.restoreAdapters(records);
    registry.onAdaptersChanged = (list) => adapterStore.save(list);
    if (reloaded.restored.length > 0) log.info({ file: adapterStore.file, restored: reloaded.restored }, 'admin-registered adapters restored');
    for (const { id, reason } of reloaded.skipped) log.warn({ file: adapterStore.file, adapter: id, reason }, 'admin-registered adapter not restored (kept in the file; register it again or DELETE it)');
    const store = new MergeStore(opts.dataDir);
    const { restored, skipped } = registry.restoreMerges(await store.load());
    registry.onMergesChanged = (recipes) => store.save(recipes);
    if (restored.length + skipped.length > 0) log.info({ file: store.file, restored, skipped }, 'named merges restored (built on first use)');
    if (skipped.length > 0) log.warn({ skipped }, 'named merges whose id is now an adapter or invalid were not restored');
  }
  const foundGenerators = await generators.scan();
  for (const { id, reason } of generators.unfitGenerators()) log.warn({ generator: id, reason }, 'generator directory does not fit this base model; not offered');
  if (opts.branchesAhead && target) await prepareAdapterBranches(registry, target, opts.runtime, log);
  opts.metrics.adapters.watch(() => registry.stats());
  log.info({ adapterDir: opts.adapterDir, adapters: found.length, generators: foundGenerators.length, deltaTargets: target?.selection ?? 'none' }, 'adapter registry ready');
  const patches = opts.runtime.versions
    ? await createPatchManager({ versions: opts.runtime.versions, baseNames: names, deltaLayers: opts.rewrite?.layers ?? [], adapterDir: opts.adapterDir, adapterRoots: opts.adapterRoots, logger: opts.logger })
    : undefined;
  const resolver = createAdapterResolver({
    id: model.id,
    contextLength: model.contextLength,
    created: opts.created ?? Math.floor(Date.now() / 1000),
    registry,
    generators,
    ...(patches ? { patches } : {}),
  });
  return { runtime: opts.runtime, resolver, adapters: registry, generators, ...(patches ? { patches } : {}) };
}

/** The served tokenizer, and the embedding table decoded from the base ONNX once, when first needed. */
function stringSource(runtime: ServingRuntime, onnxPath: string): StringEmbeddingSource {
  let table: Promise<TokenEmbedding> | undefined;
  return {
    encode: (text) => runtime.tokenizer.encode(text),
    embedding() {
      table ??= readFile(onnxPath)
        .then((bytes) => findTokenEmbedding(decodeModel(new Uint8Array(bytes))))
        .catch((err: unknown) => {
          throw badRequest(`string conditions are not available with this base model: ${(err as Error).message}`, 'condition', 'string_condition_unavailable');
        });
      // A failure is not kept: the next request retries.
      table.catch(() => (table = undefined));
      return table;
    },
  };
}
