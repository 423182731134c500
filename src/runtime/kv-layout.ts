/**
 * How a decoder graph takes and returns its KV cache, detected from its outputs, so the engine and the
 * scheduler serve both kinds the same way:
 *  - `concat` (the ONNX contract: Optimum exports, the embedded GPT-2 and Llama, `--attention concat`
 *    imports): `present.*` = Concat(past, new) comes back whole each step (batch-kv.ts).
 *  - `slots` (`--attention append` imports): the graph returns only `new_key_values.*`; the runtime keeps
 *    fixed-capacity buffers and appends to them (slot-kv.ts), so no step copies the cache.
 */
import type { Tensor } from 'onnxruntime-node';
import { BatchKv, pack as packBatch, pastNames, presentNames, type KvShape } from './batch-kv.ts';
import { SlotKv, SlotPolicy, DEFAULT_KV_BLOCK } from './slot-kv.ts';

export type KvCache = BatchKv | SlotKv;

/** One row of an existing cache, to be carried into a new one. */
export interface RowRef {
  from: KvCache;
  row: number;
}

export interface KvLayout {
  readonly kind: 'concat' | 'slots';
  empty(rows: number): KvCache;
  /**
   * A cache holding `refs`' rows in order. `inPlace`: the first source will not be used again (the
   * scheduler replacing its batch cache), so a layout may reuse its memory.
   */
  pack(refs: readonly RowRef[], inPlace: boolean): KvCache;
  /** The cache outputs to fetch besides `logits`. */
  readonly outputs: readonly string[];
  /** Adds the past tensors and the attention mask for a step of `width` columns (`newLens` real per row). */
  feed(kv: KvCache, feeds: Record<string, Tensor>, width: number, newLens: readonly number[]): void;
  /** The cache after the step; `out` holds the fetched outputs. */
  advance(kv: KvCache, out: Record<string, Tensor>, width: number, added: readonly number[]): KvCache;
}

export function newKvNames(numLayers: number): string[] {
  return Array.from({ length: numLayers }, (_, i) => [`new_key_values.${i}.key`, `new_key_values.${i}.value`]).flat();
}

export interface LayoutOptions {
  /** Positions a slot grows by (slot-kv.ts); default DEFAULT_KV_BLOCK. */
  kvBlock?: number;
  /** Largest slot: the model's context length. */
  maxCapacity: number;
}

/** Picks the layout from the graph's output names. */
export function kvLayoutFor(outputNames: readonly string[], shape: KvShape, opts: LayoutOptions): KvLayout {
  return outputNames.includes('new_key_values.0.key') ? new SlotLayout(shape, new SlotPolicy(opts.kvBlock ?? DEFAULT_KV_BLOCK, opts.maxCapacity)) : new ConcatLayout(shape);
}

class ConcatLayout implements KvLayout {
  readonly kind = 'concat';
  readonly outputs: readonly string[];
  private readonly past: string[];

  constructor(private readonly shape: KvShape) {
    this.outputs = presentNames(shape.numLayers);
    this.past = pastNames(shape.numLayers);
  }

  empty(rows: number): KvCache {
    return BatchKv.empty(this.shape, rows);
  }

  pack(refs: readonly RowRef[]): KvCache {
    return packBatch(this.shape, refs.map((r) => ({ from: asBatch(r.from), row: r.row })));
  }

  feed(kv: KvCache, feeds: Record<string, Tensor>, width: number, newLens: readonly number[]): void {
    const batch = asBatch(kv);
    feeds['attention_mask'] = batch.mask(width, newLens);
    this.past.forEach((name, i) => (feeds[name] = batch.tensors[i]!));
  }

  advance(kv: KvCache, out: Record<string, Tensor>, width: number, added: readonly number[]): KvCache {
    return asBatch(kv).advance(this.outputs.map((n) => out[n]!), width, added);
  }
}

class SlotLayout implements KvLayout {
  readonly kind = 'slots';
  readonly outputs: readonly string[];
  private readonly past: string[];

  constructor(
    private readonly shape: KvShape,
    private readonly policy: SlotPolicy,
  ) {
    this.outputs = newKvNames(shape.numLayers);
    this.past = pastNames(shape.numLayers);
  }

  empty(rows: number): KvCache {
    return new SlotKv(this.shape, this.policy, rows);
  }

  pack(refs: readonly RowRef[], inPlace: boolean): KvCache {
    return SlotKv.pack(this.shape, this.policy, refs.map((r) => ({ from: asSlots(r.from), row: r.row })), inPlace);
  }

  feed(kv: KvCache, feeds: Record<string, Tensor>, width: number, newLens: readonly number[]): void {
    const slots = asSlots(kv);
    feeds['attention_mask'] = slots.mask(width, newLens);
    slots.tensors().forEach((t, i) => (feeds[this.past[i]!] = t));
  }

  /** Appends in place: the same cache object comes back, holding the step's keys/values too. */
  advance(kv: KvCache, out: Record<string, Tensor>, width: number, added: readonly number[]): KvCache {
    const slots = asSlots(kv);
    slots.append(this.outputs.map((n) => out[n]!), width, added);
    return slots;
  }
}

function asBatch(kv: KvCache): BatchKv {
  if (!(kv instanceof BatchKv)) throw new TypeError('a slot KV cache was handed to a Concat-cache graph');
  return kv;
}

function asSlots(kv: KvCache): SlotKv {
  if (!(kv instanceof SlotKv)) throw new TypeError('a Concat KV cache was handed to a slot-cache graph');
  return kv;
}
