import { Tensor } from 'onnxruntime-node';

/** Shape of one layer's cached keys or values per row: [numKvHeads, positions, headDim]. */
export interface KvShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

/** Input/output names of the Optimum decoder layout, in feed order (layer 0 key, layer 0 value, …). */
export function pastNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [`past_key_values.${i}.key`, `past_key_values.${i}.value`]).flat();
}

export function presentNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [`present.${i}.key`, `present.${i}.value`]).flat();
}

/**
 * The KV cache of a whole batch, as the tensors the model consumes: 2·numLayers tensors of
 * [batch, numKvHeads, width, headDim]. Row b's real positions are always the suffix
 * [width − lens[b], width): prompts are left-padded and every decode step appends one column to all rows,
 * so the attention mask is fully described by `lens`. While the batch's membership is unchanged the
 * model's `present` outputs become the next step's `past` as they are: no copy. Only when rows join or
 * leave is the cache re-packed (see `pack`).
 */
export class BatchKv {
  constructor(
    readonly shape: KvShape,
    readonly tensors: Tensor[],
    readonly width: number,
    readonly lens: number[],
  ) {}

  static empty(shape: KvShape, rows: number): BatchKv {
    const tensors = Array.from(
      { length: 2 * shape.numLayers },
      () => new Tensor('float32', new Float32Array(0), [rows, shape.numKvHeads, 0, shape.headDim]),
    );
    return new BatchKv(shape, tensors, 0, new Array<number>(rows).fill(0));
  }

  get rows(): number {
    return this.lens.length;
  }

  /** The attention mask for a step that appends `newWidth` columns where each row has `newLens[b]` real ones. */
  mask(newWidth: number, newLens: readonly number[]): Tensor {
    const total = this.width + newWidth;
    const data = new BigInt64Array(this.rows * total);
    for (let b = 0; b < this.rows; b++) {
      const row = b * total;
      for (let k = this.width - this.lens[b]!; k < this.width; k++) data[row + k] = 1n;
      for (let k = total - newLens[b]!; k < total; k++) data[row + k] = 1n;
    }
    return new Tensor('int64', data, [this.rows, total]);
  }

  /** The cache after a step whose `present` outputs are `presents`, with `added[b]` real new columns per row. */
  advance(presents: Tensor[], newWidth: number, added: readonly number[]): BatchKv {
    return new BatchKv(this.shape, presents, this.width + newWidth, this.lens.map((l, b) => l + added[b]!));
  }
}

/** One row of an existing batch cache, to be carried into a new one. */
export interface RowRef {
  from: BatchKv;
  row: number;
}

/**
 * Builds a fresh batch cache from rows of existing ones, each row's real suffix copied right-aligned into
 * a tensor just wide enough for the longest row. Cost: one copy of the live cache, paid only when the
 * batch's membership changes.
 */
export function pack(shape: KvShape, refs: readonly RowRef[]): BatchKv {
  const lens = refs.map((r) => r.from.lens[r.row]!);
  const width = Math.max(0, ...lens);
  const { numKvHeads: heads, headDim: dim } = shape;
  const tensors: Tensor[] = [];
  for (let t = 0; t < 2 * shape.numLayers; t++) {
    const out = new Float32Array(refs.length * heads * width * dim);
    refs.forEach((ref, b) => {
      const src = ref.from.tensors[t]!.data as Float32Array;
      const srcWidth = ref.from.width;
      const len = lens[b]!;
      for (let h = 0; h < heads; h++) {
        const srcStart = ((ref.row * heads + h) * srcWidth + (srcWidth - len)) * dim;
        const dstStart = ((b * heads + h) * width + (width - len)) * dim;
        out.set(src.subarray(srcStart, srcStart + len * dim), dstStart);
      }
    });
    tensors.push(new Tensor('float32', out, [refs.length, heads, width, dim]));
  }
  return new BatchKv(shape, tensors, width, lens);
}
