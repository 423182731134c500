import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { BatchKv, pastNames, presentNames, type KvShape } from './batch-kv.ts';
import { deltaTensors, type DeltaLayer } from './delta-feeds.ts';

export interface ForwardResult {
  /** Logits of each row's last real position, [vocab] per row. */
  logits: Float32Array[];
  /** All logits, [rows, width, vocab] with rows left-padded to `width` (tests and scoring read these). */
  allLogits: Float32Array;
  width: number;
  kv: BatchKv;
  /** Which graph ran: the branch-free one (no row had factors) or the one with delta branches. */
  graph: 'plain' | 'delta';
}

export interface EngineOptions {
  /** The session every step can run on: the graph with delta branches (or the plain graph if none). */
  session: InferenceSession;
  /** Layers of `session` that take per-row factors. */
  deltaLayers?: readonly DeltaLayer[];
  /**
   * Optional second session on the graph without branches, for steps in which no row carries factors:
   * empty branches still cost ~4 µs per node (bench/graph-overhead.ts), which is up to 14 % of a tiny model's
   * step. It holds a second copy of the weights, hence optional (PATCHBAY_PLAIN_SESSION).
   */
  plainSession?: InferenceSession;
  shape: KvShape;
  vocabSize: number;
  baseVersion: number;
}

/**
 * One `session.run` over a batch: feeds the new tokens of every row (left-padded to the longest), their
 * positions, the mask derived from the batch cache, the cache itself and any per-row delta factors.
 */
export class Engine {
  readonly session: InferenceSession;
  readonly plainSession: InferenceSession | undefined;
  readonly shape: KvShape;
  readonly vocabSize: number;
  readonly baseVersion: number;
  private readonly deltaLayers: readonly DeltaLayer[];
  private readonly emptyDeltas = new Map<number, Record<string, Tensor>>();
  private readonly past: string[];
  private readonly present: string[];
  private readonly fetches: string[];
  private released: Promise<void> | undefined;

  constructor(opts: EngineOptions) {
    this.session = opts.session;
    this.plainSession = opts.plainSession;
    this.deltaLayers = opts.deltaLayers ?? [];
    this.shape = opts.shape;
    this.vocabSize = opts.vocabSize;
    this.baseVersion = opts.baseVersion;
    const shape = opts.shape;
    this.past = pastNames(shape.numLayers);
    this.present = presentNames(shape.numLayers);
    this.fetches = ['logits', ...this.present];
  }

  /** `deltaFeeds` undefined = no row carries factors (then the plain session runs, if there is one). */
  async forward(kv: BatchKv, tokens: readonly (readonly number[])[], deltaFeeds?: Record<string, Tensor>): Promise<ForwardResult> {
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
      attention_mask: kv.mask(width, tokens.map((t) => t.length)),
      position_ids: new Tensor('int64', positions, [rows, width]),
    };
    const plain = !deltaFeeds && this.plainSession !== undefined;
    if (!plain) Object.assign(feeds, deltaFeeds ?? this.noDeltas(rows));
    this.past.forEach((name, i) => (feeds[name] = kv.tensors[i]!));
    const out = await (plain ? this.plainSession! : this.session).run(feeds, this.fetches);
    const logits = out['logits']!.data as Float32Array;
    const vocab = this.vocabSize;
    const last = tokens.map((_, b) => logits.slice(((b + 1) * width - 1) * vocab, (b + 1) * width * vocab));
    const presents = this.present.map((name) => out[name]!);
    return { logits: last, allLogits: logits, width, graph: plain ? 'plain' : 'delta', kv: kv.advance(presents, width, tokens.map((t) => t.length)) };
  }

  /** Frees the sessions (a retired base version's, once its last sequence ended). Idempotent. */
  release(): Promise<void> {
    this.released ??= (async () => {
      await this.session.release();
      await this.plainSession?.release();
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
