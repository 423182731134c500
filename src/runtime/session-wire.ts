/**
 * What crosses between the JS thread and a session worker (session-host.ts ↔ session-worker.ts): tensors as
 * plain {type, dims, data} records whose data buffers are *transferred* (moved, not copied), and errors as
 * plain records that become a PatchbayError again on the other side.
 */
import { Tensor } from 'onnxruntime-node';
import { PatchbayError } from '../errors.ts';
import type { SessionOptions } from './session.ts';
import { BaseVersionError } from './versions/base-versions-error.ts';
import type { ComposePart, ComposeSlot } from './versions/compose.ts';

export type WireData = Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array | Int8Array | Int16Array | Float64Array;

export interface WireTensor {
  name: string;
  type: Tensor.Type;
  dims: readonly number[];
  data: WireData;
}

/** The model a worker builds a session from. */
export type WireModel =
  /** Bytes of its own (moved into the worker). */
  | { bytes: Uint8Array }
  /**
   * The pristine bytes in shared memory plus the changed initializers: the worker makes its own copy with
   * `patches[i].data` written at byte `offset` (ORT only loads from non-shared buffers).
   */
  | { shared: Uint8Array; patches: { offset: number; data: Float32Array }[] };

export type Request =
  | { op: 'compose'; id: number; pristine: Uint8Array; slots: [string, ComposeSlot][]; parts: ComposePart[] }
  | { op: 'create'; id: number; sid: number; model: WireModel; options: SessionOptions }
  | { op: 'run'; id: number; sid: number; feeds: WireTensor[]; fetches: string[] }
  | { op: 'release'; id: number; sid: number };

export interface WireError {
  message: string;
  name?: string;
  status?: number;
  code?: string;
}

export type Reply =
  | { id: number; ok: true; names?: { inputs: string[]; outputs: string[] }; outputs?: WireTensor[]; composed?: [string, Float32Array][] }
  | { id: number; ok: false; error: WireError };

/**
 * `tensor` as a wire record, and the buffer to transfer. The buffer is moved only when the view owns it
 * whole and `move` allows it; otherwise the view is copied first (one memcpy) so that only the copy moves
 * and the caller's tensor stays usable.
 */
export function toWire(name: string, tensor: Tensor, move: boolean): { wire: WireTensor; transfer: ArrayBuffer } {
  const data = tensor.data as WireData;
  if (typeof (data as unknown as string[])[0] === 'string') throw new Error(`session workers do not carry string tensors (${name})`);
  const owns = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && !(data.buffer instanceof SharedArrayBuffer);
  const own = move && owns ? data : (data.slice() as WireData);
  return { wire: { name, type: tensor.type, dims: tensor.dims, data: own }, transfer: own.buffer as ArrayBuffer };
}

export function fromWire(w: WireTensor): Tensor {
  return new Tensor(w.type as 'float32', w.data as Float32Array, w.dims);
}

export function errorToWire(error: unknown): WireError {
  const e = error as Partial<PatchbayError> & Error;
  return { message: e?.message ?? String(error), ...(e?.name ? { name: e.name } : {}), ...(e?.code ? { code: e.code } : {}), ...(e?.status ? { status: e.status } : {}) };
}

export function errorFromWire(w: WireError): Error {
  if (w.status !== undefined && w.code !== undefined) return new PatchbayError({ status: w.status, code: w.code, message: w.message });
  if (w.name === 'BaseVersionError' && w.code) return new BaseVersionError(w.code as BaseVersionError['code'], w.message);
  const error = new Error(w.message);
  if (w.name) error.name = w.name;
  return error;
}
