import { Tensor } from 'onnxruntime-node';
import type { ModelSession } from './session.ts';
import { BranchSessions, type BranchSessionsOptions } from './branch-sessions.ts';
import type { KvShape } from './batch-kv.ts';
import { kvLayoutFor, type KvCache, type KvLayout, type RowRef } from './kv-layout.ts';
import { deltaTensors, type DeltaLayer } from './delta-feeds.ts';
import { LOGITS_START_INPUT } from './graph/logits-slice.ts';

export interface ForwardOptions {
  /**
   * How many trailing positions of the (left-padded) step need logits; default 1, the last. A graph
   * rewritten by graph/logits-slice.ts then skips lm_head for the others; other graphs compute all.
   */
  tail?: number;
}

export interface ForwardResult {
  /** Logits of each row's last real position, [vocab] per row. */
  logits: Float32Array[];
  /**
   * Logits of the step's last `logitsWidth` positions, [rows, logitsWidth, vocab], rows left-padded to
   * `width`: position p of the padded step is at p − (width − logitsWidth). `logitsWidth` is what the call
   * asked for (`tail`), or `width` on a graph without the logits slice.
   */
  allLogits: Float32Array;
  logitsWidth: number;
  width: number;
  kv: KvCache;
  /**
   * Which graph ran: the branch-free one (no row had factors), the one with every delta branch, or a copy
   * that keeps only the branches the batch uses (branch-sessions.ts), or the wide session (several rows, no
   * factors: a quantized model's float32 or int8 form, `EngineOptions.wideSession`).
   */
  graph: 'plain' | 'delta' | 'delta-used' | 'wide';
}

export interface EngineOptions {
  /** The session every step can run on: the graph with delta branches (or the plain graph if none). */
  session: ModelSession;
  /** Layers of `session` that take per-row factors. */
  deltaLayers?: readonly DeltaLayer[];
  /**
   * Optional second session on the graph without branches, for steps in which no row carries factors:
   * empty branches still cost ~4 µs per node (bench/graph-overhead.ts), which is up to 14 % of a tiny model's
   * step. It holds a second copy of the weights, hence optional (PATCHBAY_PLAIN_SESSION).
   */
  plainSession?: ModelSession;
  /**
   * Optional session for steps of at least `wideMinRows` rows, none with factors: the branch-free graph of a
   * quantized model in another form (runtime/index.ts, PATCHBAY_WIDE_SESSION). ORT's MatMulNBits costs 2–3×
   * per row more with several rows than with one at accuracy_level 0; the float32 form (same values, exact)
   * or int8 activations (approximate) are cheaper there, while one row stays on the 4-bit graph.
   */
  wideSession?: ModelSession;
  /** Fewest rows (sequences) a step needs to run on `wideSession`; default 2. */
  wideMinRows?: number;
  /**
   * Count a step's tokens (rows × width) instead of its rows against `wideMinRows`, so a lone sequence's
   * prefill runs on the wide session too. Only for a wide form whose results equal the 4-bit graph's (the
   * float32 form): with int8 a lone request would get approximate prompt logits.
   */
  wideCountsTokens?: boolean;
  /**
   * Sessions on the delta graph reduced to the layers a batch uses (branch-sessions.ts): how many at most,
   * and how to build one. Omitted: every adapter step runs on `session`.
   */
  branchSessions?: Pick<BranchSessionsOptions, 'build' | 'max' | 'buildAfterSteps' | 'onBuildError'>;
  shape: KvShape;
  vocabSize: number;
  baseVersion: number;
  /** Slot-cache graphs (kv-layout.ts): largest growth step of the slots, positions; default slot-kv.ts DEFAULT_KV_BLOCK. */
  kvBlock?: number;
  /** Slot-cache graphs: the largest slot, the model's context length (default: unbounded). */
  contextLength?: number;
}

/**
 * One `session.run` over a batch: feeds the new tokens of every row (left-padded to the longest), their
 * positions, the mask derived from the batch cache, the cache itself and any per-row delta factors.
 */
export class Engine {
  readonly session: ModelSession;
  readonly plainSession: ModelSession | undefined;
  readonly wideSession: ModelSession | undefined;
  private readonly wideMinRows: number;
  private readonly wideCountsTokens: boolean;
  readonly shape: KvShape;
  readonly vocabSize: number;
  readonly baseVersion: number;
  private readonly deltaLayers: readonly DeltaLayer[];
  private readonly emptyDeltas = new Map<number, Record<string, Tensor>>();
  private readonly reduced: BranchSessions | undefined;
  /** How this graph takes and returns its cache (Concat presents or runtime-owned slots). */
  readonly kvLayout: KvLayout;
  private readonly fetches: string[];
  private released: Promise<void> | undefined;

  constructor(opts: EngineOptions) {
    this.session = opts.session;
    this.plainSession = opts.plainSession;
    this.wideSession = opts.wideSession;
    this.wideMinRows = opts.wideMinRows ?? 2;
    this.wideCountsTokens = opts.wideCountsTokens ?? false;
    this.deltaLayers = opts.deltaLayers ?? [];
    this.reduced = opts.branchSessions && this.deltaLayers.length > 0 ? new BranchSessions({ layers: this.deltaLayers, ...opts.branchSessions }) : undefined;
    this.shape = opts.shape;
    this.vocabSize = opts.vocabSize;
    this.baseVersion = opts.baseVersion;
    this.kvLayout = kvLayoutFor(opts.session.outputNames, opts.shape, {
      maxCapacity: opts.contextLength ?? Number.MAX_SAFE_INTEGER,
      ...(opts.kvBlock !== undefined ? { kvBlock: opts.kvBlock } : {}),
    });
    this.fetches = ['logits', ...this.kvLayout.outputs];
  }

  /** An empty cache of `rows` rows, for a prefill. */
  emptyKv(rows: number): KvCache {
    return this.kvLayout.empty(rows);
  }

  /**
   * A cache with `refs`' rows, in order (rows joining or leaving a batch). `inPlace`: the first source is
   * being replaced and will not be read again, so its memory may be reused.
   */
  pack(refs: readonly RowRef[], inPlace = false): KvCache {
    return this.kvLayout.pack(refs, inPlace);
  }

  /** `deltaFeeds` undefined = no row carries factors (then the plain session runs, if there is one). */
  async forward(
    kv: KvCache,
    tokens: readonly (readonly number[])[],
    deltaFeeds?: Record<string, Tensor>,
    opts: ForwardOptions = {},
  ): Promise<ForwardResult> {
    const rows = tokens.length;
    const width = Math.max(...tokens.map((t) => t.length));
    const ids = new BigInt64Array(rows * width);
    const positions = new BigInt64Array(rows * width);
    tokens.forEach((row, b) => {
      const pad = width - row.length;
      for (let i = 0; i < row.length; i++) {
        ids[b * width + pad + i] = BigInt(row[i]!);
        positions[b * width + pad + i] = BigInt(kv.lens[b]! + i);
      }
    });
    const feeds: Record<string, Tensor> = {
      input_ids: new Tensor('int64', ids, [rows, width]),
      position_ids: new Tensor('int64', positions, [rows, width]),
    };
    const wide = !deltaFeeds && this.wideSession !== undefined && (this.wideCountsTokens ? rows * width : rows) >= this.wideMinRows;
    const plain = !wide && !deltaFeeds && this.plainSession !== undefined;
    const used = deltaFeeds && this.reduced?.pick(deltaFeeds);
    const session = wide ? this.wideSession! : plain ? this.plainSession! : used ? used.session : this.session;
    if (!plain && !wide) Object.assign(feeds, used ? used.feeds : deltaFeeds ?? this.noDeltas(rows));
    if (session.inputNames.includes(LOGITS_START_INPUT)) {
      const tail = Math.min(width, Math.max(1, opts.tail ?? 1));
      feeds[LOGITS_START_INPUT] = new Tensor('int64', BigInt64Array.of(BigInt(-tail)), [1]);
    }
    this.kvLayout.feed(kv, feeds, width, tokens.map((t) => t.length));
    const out = await session.run(feeds, this.fetches);
    const logitsTensor = out['logits']!;
    const logits = logitsTensor.data as Float32Array;
    const logitsWidth = logitsTensor.dims[1]!;
    const vocab = this.vocabSize;
    const last = tokens.map((_, b) => logits.slice(((b + 1) * logitsWidth - 1) * vocab, (b + 1) * logitsWidth * vocab));
    return {
      logits: last,
      allLogits: logits,
      logitsWidth,
      width,
      graph: wide ? 'wide' : plain ? 'plain' : used ? 'delta-used' : 'delta',
      // Slot caches are appended to in place: only after a successful run, so a failed step leaves kv intact.
      kv: this.kvLayout.advance(kv, out, width, tokens.map((t) => t.length)),
    };
  }

  /**
   * Builds the session reduced to `layers` ahead of the steps that will need it (BranchSessions.prepare):
   * whether one now covers them (false without branch sessions, or when their bound is reached).
   */
  prepareBranches(layers: ReadonlySet<string>): Promise<boolean> {
    return this.reduced?.prepare(layers) ?? Promise.resolve(false);
  }

  /** Resolves once no reduced-branch session is being built (branch-sessions.ts). */
  branchSessionsSettled(): Promise<void> {
    return this.reduced?.settled() ?? Promise.resolve();
  }

  /** Frees the sessions (a retired base version's, once its last sequence ended). Idempotent. */
  release(): Promise<void> {
    this.released ??= (async () => {
      await this.reduced?.release();
      await this.session.release();
      await this.plainSession?.release();
      await this.wideSession?.release();
    })();
    return this.released;
  }

  /** Rank-0 factors for every branch: the delta graph needs all its inputs even when no row uses them. */
  private noDeltas(rows: number): Record<string, Tensor> {
    let feeds = this.emptyDeltas.get(rows);
    if (!feeds) {
      feeds = deltaTensors(this.deltaLayers, new Array(rows).fill(undefined));
      this.emptyDeltas.set(rows, feeds);
    }
    return feeds;
  }
}
