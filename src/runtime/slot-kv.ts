import { Tensor } from 'onnxruntime-node';
import type { KvShape } from './batch-kv.ts';

/**
 * The KV cache of a batch for graphs whose attention only *reads* the cache (import `--attention append`,
 * src/import/attention-core.ts): per layer one key and one value buffer of [rowCapacity, numKvHeads, C,
 * headDim], C positions per row ("slot"). Row b holds its positions [0, lens[b]) (right-padded); the graph
 * gets the first `rows` rows as a view (no copy: the rows are the outermost axis) and returns only the
 * step's new keys/values [rows, numKvHeads, S, headDim], which `append` writes at lens[b]. So a decode
 * step moves B·layers·2·numKvHeads·headDim floats, whatever the context.
 *
 * Capacity policy (SlotPolicy): C = the longest row's need rounded up to a growth step of 1/8 of it (16 to
 * `block` = PATCHBAY_KV_BLOCK positions), at most `maxCapacity` (the model's context length). A step that
 * needs more re-allocates and copies the live rows once. Memory: 2 · layers · numKvHeads · headDim · 4 bytes per position per row slot,
 * 46 KB for SmolLM2-135M (C = 1024: 47 MB per row).
 */
export class SlotKv {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  private rowCapacity = 0;
  /** Positions per row slot (C). */
  capacity = 0;
  lens: number[];

  constructor(
    readonly shape: KvShape,
    readonly policy: SlotPolicy,
    rows: number,
  ) {
    this.lens = new Array<number>(rows).fill(0);
  }

  get rows(): number {
    return this.lens.length;
  }

  /** Floats per row and layer in one buffer. */
  private rowFloats(capacity = this.capacity): number {
    return this.shape.numKvHeads * capacity * this.shape.headDim;
  }

  /** The `past_key_values.*` feeds: views of the first `rows` row slots, [rows, KV, C, hd]. */
  tensors(): Tensor[] {
    const dims = [this.rows, this.shape.numKvHeads, this.capacity, this.shape.headDim];
    const n = this.rows * this.rowFloats();
    const out: Tensor[] = [];
    for (let l = 0; l < this.shape.numLayers; l++) {
      out.push(new Tensor('float32', this.keys[l]?.subarray(0, n) ?? new Float32Array(0), dims));
      out.push(new Tensor('float32', this.values[l]?.subarray(0, n) ?? new Float32Array(0), dims));
    }
    return out;
  }

  /**
   * attention_mask [rows, C + newWidth]: row b's cached positions [0, lens[b]) and its `newLens[b]` real
   * new tokens, which a left-padded step holds in its last columns.
   */
  mask(newWidth: number, newLens: readonly number[]): Tensor {
    const total = this.capacity + newWidth;
    const data = new BigInt64Array(this.rows * total);
    for (let b = 0; b < this.rows; b++) {
      const row = b * total;
      data.fill(1n, row, row + this.lens[b]!);
      data.fill(1n, row + total - newLens[b]!, row + total);
    }
    return new Tensor('int64', data, [this.rows, total]);
  }

  /**
   * Writes a step's new keys/values (per layer: key, value, each [rows, KV, S, hd], left-padded) after the
   * cached ones: row b's last `added[b]` columns go to positions lens[b]…; grows the slots first if needed.
   */
  append(news: readonly Tensor[], width: number, added: readonly number[]): void {
    const need = Math.max(0, ...this.lens.map((l, b) => l + added[b]!));
    if (need > this.capacity || this.rows > this.rowCapacity) this.reallocate(this.rows, this.policy.capacityFor(need));
    const { numKvHeads: heads, headDim: dim } = this.shape;
    for (let t = 0; t < 2 * this.shape.numLayers; t++) {
      const src = news[t]!.data as Float32Array;
      const dst = (t % 2 === 0 ? this.keys : this.values)[t >> 1]!;
      for (let b = 0; b < this.rows; b++) {
        const n = added[b]!;
        if (n === 0) continue;
        for (let h = 0; h < heads; h++) {
          const from = ((b * heads + h) * width + (width - n)) * dim;
          dst.set(src.subarray(from, from + n * dim), ((b * heads + h) * this.capacity + this.lens[b]!) * dim);
        }
      }
    }
    this.lens = this.lens.map((l, b) => l + added[b]!);
  }

  /** New buffers of `rowCapacity` × `capacity`, keeping the live positions of the current rows. */
  private reallocate(rowCapacity: number, capacity: number): void {
    const { numKvHeads: heads, headDim: dim } = this.shape;
    const size = rowCapacity * heads * capacity * dim;
    const move = (old: Float32Array | undefined): Float32Array => {
      const next = new Float32Array(size);
      if (old) {
        for (let b = 0; b < Math.min(this.rows, this.rowCapacity); b++) {
          for (let h = 0; h < heads; h++) {
            const from = (b * heads + h) * this.capacity * dim;
            next.set(old.subarray(from, from + this.lens[b]! * dim), (b * heads + h) * capacity * dim);
          }
        }
      }
      return next;
    };
    this.keys = Array.from({ length: this.shape.numLayers }, (_, l) => move(this.keys[l]));
    this.values = Array.from({ length: this.shape.numLayers }, (_, l) => move(this.values[l]));
    this.rowCapacity = rowCapacity;
    this.capacity = capacity;
  }

  /** Copies row `row` of `from` (its live positions) into this cache's row `to`. */
  private copyRow(to: number, from: SlotKv, row: number): void {
    const { numKvHeads: heads, headDim: dim } = this.shape;
    const len = from.lens[row]!;
    for (let l = 0; l < this.shape.numLayers; l++) {
      for (const [dst, src] of [[this.keys[l]!, from.keys[l]!], [this.values[l]!, from.values[l]!]] as const) {
        for (let h = 0; h < heads; h++) {
          const s = (row * heads + h) * from.capacity * dim;
          dst.set(src.subarray(s, s + len * dim), (to * heads + h) * this.capacity * dim);
        }
      }
    }
    this.lens[to] = len;
  }

  /**
   * A cache holding `refs`' rows, in order. With `inPlace`, when the rows taken from the first source
   * cache keep their order and come first (rows leaving, newcomers appended: the scheduler's membership
   * changes), that cache is compacted in place and returned — no re-allocation, no copy of rows that stay
   * where they are. Otherwise a fresh cache sized for the longest row. Sources other than the reused one
   * are only read.
   */
  static pack(shape: KvShape, policy: SlotPolicy, refs: readonly { from: SlotKv; row: number }[], inPlace: boolean): SlotKv {
    const lens = refs.map((r) => r.from.lens[r.row]!);
    const need = Math.max(0, ...lens);
    const base = refs[0]?.from;
    if (inPlace && base && base.capacity >= need && base.rowCapacity >= refs.length) {
      let prefix = 0;
      while (prefix < refs.length && refs[prefix]!.from === base && (prefix === 0 || refs[prefix]!.row > refs[prefix - 1]!.row)) prefix++;
      if (refs.slice(prefix).every((r) => r.from !== base)) {
        const baseLens = base.lens;
        base.lens = lens.slice();
        // Moving row r to slot i ≤ r in increasing order never overwrites a row still to be moved.
        for (let i = 0; i < prefix; i++) {
          const r = refs[i]!.row;
          if (r !== i) base.moveRow(i, r, baseLens[r]!);
        }
        for (let i = prefix; i < refs.length; i++) base.copyRow(i, refs[i]!.from, refs[i]!.row);
        return base;
      }
    }
    const out = new SlotKv(shape, policy, refs.length);
    out.lens = new Array<number>(refs.length).fill(0);
    out.reallocate(refs.length, policy.capacityFor(need));
    refs.forEach((r, i) => out.copyRow(i, r.from, r.row));
    return out;
  }

  /** Within this cache: row `from`'s first `len` positions to row `to` (to < from). */
  private moveRow(to: number, from: number, len: number): void {
    const { numKvHeads: heads, headDim: dim } = this.shape;
    for (const buf of [...this.keys, ...this.values]) {
      for (let h = 0; h < heads; h++) {
        const s = (from * heads + h) * this.capacity * dim;
        buf.copyWithin((to * heads + h) * this.capacity * dim, s, s + len * dim);
      }
    }
  }
}

/**
 * How many positions a row slot gets for `need`: rounded up to a growth step of need/8 (as a power of two),
 * at least MIN_KV_STEP and at most `block` positions, and never beyond `maxCapacity`. Attention reads the
 * whole slot, so the step bounds the masked columns read per row (≤ 1/8 of the live ones, ≤ block), while
 * re-allocations stay rare (every need/8 steps at most, every `block` steps beyond 8·block positions).
 */
export class SlotPolicy {
  constructor(
    readonly block: number,
    readonly maxCapacity: number,
  ) {
    if (!Number.isInteger(block) || block < 1) throw new RangeError(`KV block must be a positive integer, got ${block}`);
  }

  capacityFor(need: number): number {
    if (need === 0) return 0;
    const eighth = 2 ** Math.floor(Math.log2(Math.max(1, need / 8)));
    const step = Math.min(this.block, Math.max(MIN_KV_STEP, eighth));
    return Math.max(need, Math.min(this.maxCapacity, Math.ceil(need / step) * step));
  }
}

/** Smallest growth step (positions). */
export const MIN_KV_STEP = 16;

/** Default largest growth step, positions (PATCHBAY_KV_BLOCK). */
export const DEFAULT_KV_BLOCK = 256;
