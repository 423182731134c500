import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { BatchKv, pastNames, presentNames, type KvShape } from './batch-kv.ts';

export interface ForwardResult {
  /** Logits of each row's last real position, [vocab] per row. */
  logits: Float32Array[];
  /** All logits, [rows, width, vocab] with rows left-padded to `width` (tests and scoring read these). */
  allLogits: Float32Array;
  width: number;
  kv: BatchKv;
}

/**
 * One `session.run` over a batch: feeds the new tokens of every row (left-padded to the longest), their
 * positions, the mask derived from the batch cache, the cache itself and any per-row delta factors.
 */
export class Engine {
  private readonly past: string[];
  private readonly present: string[];
  private readonly fetches: string[];

  constructor(
    readonly session: InferenceSession,
    readonly shape: KvShape,
    readonly vocabSize: number,
    readonly baseVersion: number,
  ) {
    this.past = pastNames(shape.numLayers);
    this.present = presentNames(shape.numLayers);
    this.fetches = ['logits', ...this.present];
  }

  async forward(kv: BatchKv, tokens: readonly (readonly number[])[], deltaFeeds: Record<string, Tensor>): Promise<ForwardResult> {
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
      ...deltaFeeds,
    };
    this.past.forEach((name, i) => (feeds[name] = kv.tensors[i]!));
    const out = await this.session.run(feeds, this.fetches);
    const logits = out['logits']!.data as Float32Array;
    const vocab = this.vocabSize;
    const last = tokens.map((_, b) => logits.slice(((b + 1) * width - 1) * vocab, (b + 1) * width * vocab));
    const presents = this.present.map((name) => out[name]!);
    return { logits: last, allLogits: logits, width, kv: kv.advance(presents, width, tokens.map((t) => t.length)) };
  }
}
