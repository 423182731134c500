/**
 * Where each float32 initializer's bytes sit inside a serialized ONNX model, so a new base version can be
 * built by copying the model bytes and overwriting the changed tensors in place — no protobuf re-encode,
 * and every untouched byte (graph, other weights) stays identical to the pristine model.
 *
 * protobufjs decodes `bytes` fields as views of the input buffer, so a decoded `rawData` tells its own
 * offset. Tensors stored as `float_data`, in external files, or in other dtypes are not listed: they cannot
 * be changed by a base version (publishing one names the tensor in the error).
 */
import { decodeModel, FLOAT, onnx, tensorDims } from '../graph/onnx.ts';

export interface InitializerSlot {
  name: string;
  dims: number[];
  /** Byte offset of the raw float32 data inside the model bytes. */
  offset: number;
  /** Number of float32 elements. */
  length: number;
  /** How many graph nodes read it (2 for GPT-2's tied lm_head / embedding). */
  consumers: number;
}

export class InitializerTable {
  private constructor(
    readonly bytes: Uint8Array,
    private readonly slots: ReadonlyMap<string, InitializerSlot>,
  ) {}

  /** `bytes` is kept (not copied): the table reads pristine tensors from it for the process lifetime. */
  static of(bytes: Uint8Array): InitializerTable {
    const model = decodeModel(bytes);
    const consumers = new Map<string, number>();
    for (const n of model.graph?.node ?? []) for (const i of n.input ?? []) if (i) consumers.set(i, (consumers.get(i) ?? 0) + 1);
    const slots = new Map<string, InitializerSlot>();
    for (const t of model.graph?.initializer ?? []) {
      if (!t.name || t.dataType !== FLOAT || t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const raw = t.rawData;
      if (!raw || raw.byteLength === 0 || raw.buffer !== bytes.buffer) continue;
      const dims = tensorDims(t);
      const length = dims.reduce((a, b) => a * b, 1);
      if (raw.byteLength !== length * 4) continue;
      slots.set(t.name, { name: t.name, dims, offset: raw.byteOffset - bytes.byteOffset, length, consumers: consumers.get(t.name) ?? 0 });
    }
    return new InitializerTable(bytes, slots);
  }

  names(): string[] {
    return [...this.slots.keys()];
  }

  get(name: string): InitializerSlot | undefined {
    return this.slots.get(name);
  }

  /** A fresh copy of the pristine tensor (the model bytes need not be 4-byte aligned). */
  read(name: string): Float32Array {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`initializer ${name} is not a float32 raw-data tensor of this model`);
    const copy = copyBytes(this.bytes, slot.offset, slot.offset + slot.length * 4);
    return new Float32Array(copy.buffer, 0, slot.length);
  }

  /** The model bytes with `tensors` (name → full replacement, same length) written over the pristine ones. */
  patched(tensors: ReadonlyMap<string, Float32Array>): Uint8Array {
    const out = copyBytes(this.bytes, 0, this.bytes.byteLength);
    for (const p of this.placed(tensors)) out.set(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength), p.offset);
    return out;
  }

  /** Where each of `tensors` goes in the model bytes (what `patched` writes; a session worker writes it itself). */
  placed(tensors: ReadonlyMap<string, Float32Array>): { offset: number; data: Float32Array }[] {
    return [...tensors].map(([name, data]) => {
      const slot = this.slots.get(name);
      if (!slot) throw new Error(`initializer ${name} is not a float32 raw-data tensor of this model`);
      if (data.length !== slot.length) throw new Error(`initializer ${name} has ${slot.length} elements, the replacement ${data.length}`);
      return { offset: slot.offset, data };
    });
  }
}

/** `bytes` copied into shared memory, so worker threads read them without a copy each. */
export function sharedCopy(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
  out.set(bytes);
  return out;
}

/** A real copy even when `bytes` is a Node Buffer (whose `slice` is a view of the same memory). */
function copyBytes(bytes: Uint8Array, begin: number, end: number): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, begin, end);
}
