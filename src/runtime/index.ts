import { readFile } from 'node:fs/promises';
import { Engine } from './engine.ts';
import { readModelInfo, type ModelInfo } from './model-config.ts';
import { ContinuousBatchScheduler, type Scheduler, type StepEvent } from './scheduler.ts';
import { createSession, type Device } from './session.ts';
import { HfTokenizer, type TextTokenizer } from './tokenizer.ts';
import { addDeltaBranches, sliceLogits, withNBitsAccuracy, type DeltaRewrite, type DeltaSelection, type NBitsAccuracy } from './graph/index.ts';
import type { DeltaLayer } from './delta-feeds.ts';
import { findLinearLayers } from './graph/linear-layers.ts';
import { keepDeltaBranches } from './graph/keep-branches.ts';
import { decodeModel, encodeModel, intAttr } from './graph/onnx.ts';
import { setNBitsAccuracy } from './graph/nbits-accuracy.ts';
import { dequantizeNBitsLayers } from './graph/nbits-dequantize.ts';
import { BaseVersions, type SwapEvent } from './versions/base-versions.ts';
import { InitializerTable, sharedCopy } from './versions/initializer-table.ts';
import { SessionHost } from './session-host.ts';

export type { ModelInfo } from './model-config.ts';
export type { Scheduler, StepEvent } from './scheduler.ts';
export type { TextTokenizer } from './tokenizer.ts';
export type { Device } from './session.ts';
export type * from './types.ts';
export type { BaseVersion, SwapEvent, VersionLease, WeightChanges } from './versions/base-versions.ts';
export { BaseVersions, BaseVersionError } from './versions/base-versions.ts';

export interface RuntimeOptions {
  modelDir: string;
  /** Defaults to the model directory's name. */
  modelId?: string;
  device: Device;
  maxBatch: number;
  maxQueue: number;
  threads?: number;
  /** ORT pool threads busy-wait between parallel sections (default true; see SessionOptions.spinning). */
  spinning?: boolean;
  /**
   * Which linear layers get a per-request delta branch (adapters can only land there). `'none'` serves
   * the graph untouched. Default: see DEFAULT_DELTA_SELECTION in graph/selection.ts.
   */
  deltaSelection?: DeltaSelection | 'none';
  /**
   * Also load the graph without branches and run on it every step in which no row carries an adapter
   * (base-only traffic then pays nothing for the branches). Costs a second copy of the weights.
   * `auto` (default): on when the ONNX file is at most PLAIN_SESSION_AUTO_MAX_BYTES.
   */
  plainSession?: 'auto' | 'on' | 'off';
  /**
   * How many extra sessions per base version may run the delta graph reduced to the layers a batch's
   * adapters use (branch-sessions.ts): built once a layer set has run BRANCH_SESSION_AFTER_STEPS steps.
   * Each holds another copy of the weights. `auto` (default): 2 when the ONNX file is at most
   * PLAIN_SESSION_AUTO_MAX_BYTES, else 0.
   */
  branchSessions?: 'auto' | number;
  /** Called when a reduced session could not be built (the full delta graph keeps serving). */
  onBranchSessionError?: (error: unknown, layers: ReadonlySet<string>) => void;
  /**
   * Rewrite `accuracy_level` of every MatMulNBits node (quantized imports) before the session is built:
   * 0 = float32 compute (matches the dequantized model), 4 = int8 activations (faster, approximate).
   * Undefined keeps what the model file says.
   */
  nbitsAccuracy?: NBitsAccuracy;
  /**
   * A third session for steps of at least `wideMinRows` sequences without adapters, on a quantized model only
   * (engine.ts EngineOptions.wideSession): `f32` = the branch-free graph with every MatMulNBits layer
   * dequantized to a float32 MatMul at load (graph/nbits-dequantize.ts: same values, exact; holds the
   * float32 weights, ~4× the 4-bit file); `int8` = the same graph at accuracy_level 4 (approximate, another
   * 4-bit copy). `off` (default) or a model without MatMulNBits: no such session.
   */
  wideSession?: 'off' | 'f32' | 'int8';
  /** Default 2. */
  wideMinRows?: number;
  /**
   * Compute logits only for the positions a step needs (graph/logits-slice.ts): the last one, or a prompt's
   * every position when a request asks for prompt logprobs. Default true; false serves the graph's full
   * logits (benchmarks compare the two).
   */
  sliceLogits?: boolean;
  /**
   * Where base versions' ORT sessions live: `'versions'` (default) keeps version 0 on the serving thread and
   * builds and runs every later version in a worker thread (session-host.ts), so a publish never stalls
   * running sequences; `'all'` hosts version 0 there too (session.run never blocks HTTP; costs the hop on
   * every step); `'off'` builds everything on the serving thread (a publish stalls it for the build).
   */
  sessionWorkers?: 'off' | 'versions' | 'all';
  /**
   * Graphs with a runtime-owned KV cache (GGUF imports, `--attention append`): the largest step, in
   * positions, a batch's slots grow by when they fill (runtime/slot-kv.ts). Default DEFAULT_KV_BLOCK (256).
   */
  kvBlock?: number;
  onStep?: (event: StepEvent) => void;
  /** Every base-version switch (or failed build), for spans and metrics. */
  onSwap?: (event: SwapEvent) => void;
}

export interface Runtime {
  readonly model: ModelInfo;
  readonly tokenizer: TextTokenizer;
  readonly scheduler: Scheduler;
  /** Linear layers that accept per-request deltas (empty when the graph was not rewritten). */
  readonly deltaLayers: readonly DeltaLayer[];
  /** The graph rewrite (every linear layer found, which got a branch), or undefined with `'none'`. */
  readonly rewrite: DeltaRewrite | undefined;
  /** Global weight changes (patches, edits): see versions/base-versions.ts. */
  readonly versions: BaseVersions;
  /**
   * Builds the current base version's session reduced to `layers` now rather than after their first steps
   * (Engine.prepareBranches; adapters known at start). Whether one covers them afterwards.
   */
  prepareBranches(layers: ReadonlySet<string>): Promise<boolean>;
  close(): Promise<void>;
}

/** Above this, `plainSession: 'auto'` keeps one session: a second copy of the weights costs real memory. */
export const PLAIN_SESSION_AUTO_MAX_BYTES = 1024 ** 3;

/** Steps a layer set runs on the full delta graph before its reduced session is built (filters one-off requests). */
export const BRANCH_SESSION_AFTER_STEPS = 8;

/** Loads the base model once: tokenizer, ORT session, scheduler. */
export async function loadRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const model = await readModelInfo(opts.modelDir, opts.modelId);
  const tokenizer = await HfTokenizer.load(model.dir);
  const stored = new Uint8Array(await readFile(model.onnxPath));
  const original = opts.nbitsAccuracy === undefined ? stored : withNBitsAccuracy(stored, opts.nbitsAccuracy);
  // One decode serves both rewrites: the logits slice first, so a delta branch on lm_head reads the slice.
  const proto = decodeModel(original);
  const plainBytes = opts.sliceLogits !== false && sliceLogits(proto) ? encodeModel(proto) : original;
  const rewrite = opts.deltaSelection === 'none' ? undefined : addDeltaBranches(proto, opts.deltaSelection);
  const deltaLayers: DeltaLayer[] = rewrite?.layers ?? [];
  const sessionOptions = { device: opts.device, threads: opts.threads, ...(opts.spinning !== undefined ? { spinning: opts.spinning } : {}) };
  const wantPlain = opts.plainSession ?? 'auto';
  const keepPlain = rewrite !== undefined && (wantPlain === 'on' || (wantPlain === 'auto' && original.byteLength <= PLAIN_SESSION_AUTO_MAX_BYTES));
  // The pristine bytes of each graph stay in memory: every base version is built from them (versions/).
  // With session workers they live in shared memory (one copy, read by every worker); ORT cannot load from
  // shared memory, so version 0 on this thread is built from the original bytes, which are then dropped.
  const workers = opts.sessionWorkers ?? 'versions';
  const keep = (bytes: Uint8Array) => (workers === 'off' ? bytes : sharedCopy(bytes));
  const servedTable = InitializerTable.of(keep(rewrite?.bytes ?? plainBytes));
  const plainTable = keepPlain ? InitializerTable.of(keep(plainBytes)) : undefined;
  // Built once for version 0 and then dropped (a float32 form is ~4× the 4-bit file): published base versions
  // (patches, edits) serve without a wide session.
  let wideBytes = wideForm(plainBytes, opts.wideSession ?? 'off');
  // Version 0 on this thread with shared tables: the original (non-shared) bytes, dropped once it is built.
  let originals: { served: Uint8Array; plain: Uint8Array } | undefined = { served: rewrite?.bytes ?? plainBytes, plain: plainBytes };
  const inThread = (table: InitializerTable, original: Uint8Array | undefined, tensors: ReadonlyMap<string, Float32Array>) =>
    createSession(tensors.size > 0 ? table.patched(tensors) : workers === 'off' ? table.bytes : (original ?? table.patched(tensors)), sessionOptions);
  const wantReduced = opts.branchSessions ?? 'auto';
  const maxReduced = rewrite === undefined ? 0 : wantReduced === 'auto' ? (original.byteLength <= PLAIN_SESSION_AUTO_MAX_BYTES ? 2 : 0) : wantReduced;
  const engineFrom = async (baseVersion: number, tensors: ReadonlyMap<string, Float32Array>) => {
    // keepDeltaBranches re-encodes the model, so its bytes are ordinary memory even from a shared table.
    const served = () => (tensors.size > 0 ? servedTable.patched(tensors) : servedTable.bytes);
    const branchSessions =
      maxReduced > 0
        ? {
            max: maxReduced,
            buildAfterSteps: BRANCH_SESSION_AFTER_STEPS,
            // The version's own (patched) weights, re-derived on demand rather than held per version.
            build: (keep: ReadonlySet<string>) => createSession(keepDeltaBranches(served(), deltaLayers, keep), sessionOptions),
            ...(opts.onBranchSessionError ? { onBuildError: opts.onBranchSessionError } : {}),
          }
        : undefined;
    const shape = {
      deltaLayers,
      branchSessions,
      shape: model,
      vocabSize: model.vocabSize,
      baseVersion,
      contextLength: model.contextLength,
      ...(opts.kvBlock !== undefined ? { kvBlock: opts.kvBlock } : {}),
      ...(opts.wideMinRows !== undefined ? { wideMinRows: opts.wideMinRows } : {}),
      // The float32 form computes what the 4-bit graph does: a lone sequence's prefill may run on it too.
      wideCountsTokens: opts.wideSession === 'f32',
    };
    if (workers === 'off' || (workers === 'versions' && baseVersion === 0)) {
      const session = await inThread(servedTable, originals?.served, tensors);
      const plainSession = plainTable && (await inThread(plainTable, originals?.plain, tensors));
      const wideSession = baseVersion === 0 && wideBytes ? await createSession(wideBytes, sessionOptions) : undefined;
      wideBytes = undefined;
      return new Engine({ session, plainSession, ...(wideSession ? { wideSession } : {}), ...shape });
    }
    // Built and run on a worker thread: the serving thread keeps stepping the running version meanwhile.
    // The worker was started beforehand (its module loading is not part of a publish); the next spare
    // starts once this build is done, so it does not compete with it for CPU.
    const host = spare ?? new SessionHost();
    spare = undefined;
    try {
      const session = await host.create({ shared: servedTable.bytes, patches: servedTable.placed(tensors) }, sessionOptions);
      const plainSession = plainTable && (await host.create({ shared: plainTable.bytes, patches: plainTable.placed(tensors) }, sessionOptions));
      return new Engine({ session, plainSession, ...shape });
    } catch (error) {
      await host.close();
      throw error;
    } finally {
      if (!closing) spare ??= new SessionHost();
    }
  };
  let closing = false;
  let spare = workers === 'off' ? undefined : new SessionHost();
  const linearWeights = new Map(
    (rewrite?.linearLayers ?? findLinearLayers(proto)).map((l) => [l.name, { initializer: l.weightName, dIn: l.dIn, dOut: l.dOut }]),
  );
  const initial = await engineFrom(0, new Map())
    .catch(async (error: unknown) => {
      await spare?.close();
      throw error;
    })
    .finally(() => (originals = undefined));
  const versions: BaseVersions = new BaseVersions({
    initial,
    table: servedTable,
    linearWeights,
    build: engineFrom,
    // With session workers the publish's arithmetic runs in the worker that will build the version.
    ...(workers === 'off' ? {} : { compose: (parts, names) => (spare ??= new SessionHost()).compose(servedTable.bytes, versions.slots(names), parts) }),
    ...(opts.onSwap ? { onSwap: opts.onSwap } : {}),
  });
  const scheduler = new ContinuousBatchScheduler(versions, tokenizer, {
    vocabSize: model.vocabSize,
    maxBatch: opts.maxBatch,
    maxQueue: opts.maxQueue,
    contextLength: model.contextLength,
    eosTokenIds: model.eosTokenIds,
    deltaLayers,
    onStep: opts.onStep,
  });
  let closed = false;
  return {
    model,
    tokenizer,
    scheduler,
    deltaLayers,
    // Its bytes are the served table's (the original copy is dropped once version 0 is built).
    rewrite: rewrite && { ...rewrite, bytes: servedTable.bytes },
    versions,
    prepareBranches: (layers) => versions.current().engine.prepareBranches(layers),
    async close() {
      if (closed) return;
      closed = true;
      await scheduler.drain();
      closing = true;
      await versions.close();
      await spare?.close();
    },
  };
}

/**
 * The wide session's graph (RuntimeOptions.wideSession) from the branch-free bytes; undefined when off or
 * when the model has no MatMulNBits layer to change.
 */
function wideForm(plainBytes: Uint8Array, form: 'off' | 'f32' | 'int8'): Uint8Array | undefined {
  if (form === 'off') return undefined;
  const proto = decodeModel(plainBytes);
  if (form === 'f32') {
    // A float32 form over ONNX's 2 GB single-file limit cannot be encoded: refuse before allocating it.
    const floats = (proto.graph?.node ?? []).filter((n) => n.opType === 'MatMulNBits' && !(n.name ?? '').includes('/nbits_lo/')).reduce((s, n) => s + intAttr(n, 'K', 0) * intAttr(n, 'N', 0), 0);
    if (plainBytes.byteLength + 4 * floats > 2_000_000_000) {
      throw new Error(`PATCHBAY_WIDE_SESSION=f32: this model's float32 form needs ${((plainBytes.byteLength + 4 * floats) / 1e9).toFixed(2)} GB, over ONNX's 2 GB single-file limit; use int8 or off`);
    }
  }
  const changed = form === 'f32' ? dequantizeNBitsLayers(proto) : setNBitsAccuracy(proto, 4);
  return changed > 0 ? encodeModel(proto) : undefined;
}
