/**
 * What crosses between EditService's thread and the edit-search worker (search-host.ts ↔ search-worker.ts).
 * Float arrays are transferred (moved) where the sender no longer needs them; errors travel as plain records
 * and become an EditError (code, param) again on the other side, so a bad edit found in the worker is the
 * same 4xx as on the serving thread.
 */
import type { ModelInfo } from '../runtime/index.ts';
import type { Device } from '../runtime/session.ts';
import type { ComputedEdit, PromptEdit } from './compute.ts';
import { EditError, type EditErrorCode } from './errors.ts';
import type { ProbeLayer } from './probe.ts';
import type { EditSettings } from './settings.ts';

/** Everything the worker needs to build a LocalSearch (the tokenizer it loads itself from `model.dir`). */
export interface SearchInit {
  model: ModelInfo;
  settings: EditSettings;
  device: Device;
  threads?: number | undefined;
  layers: readonly string[];
  /**
   * Niceness of the worker thread (0–19; Linux nice is per thread, so only this thread is lowered, and ORT
   * threads its probe session starts inherit it): under CPU contention the serving thread goes first.
   * Ignored on other platforms.
   */
  nice?: number | undefined;
}

/**
 * The slice of EditState a search reads: each edited layer's W_t (float64 [d_k, d_v], a copy moved to the
 * worker) for V = kᵀW_t + δ/n and the probe's fed float32(W_t). C is not needed.
 */
export interface WireLayerState {
  name: string;
  initializer: string;
  dK: number;
  dV: number;
  w: Float64Array;
}

export type SearchRequest =
  | { op: 'init'; id: number; init: SearchInit }
  | { op: 'rebase'; id: number; baked: [string, Float32Array][]; offsets: [string, Float32Array][] }
  | { op: 'compute' | 'inspect'; id: number; edit: PromptEdit; layers: WireLayerState[] };

export interface SearchWireError {
  message: string;
  name?: string;
  code?: string;
  param?: string;
}

export type SearchReply =
  /** Progress of request `id`: its probe runs are done, the value search (JS only, no ORT call) runs. */
  | { id: number; progress: 'search' }
  | { id: number; ok: true; layers?: ProbeLayer[]; promptEdits?: boolean; computed?: ComputedEdit; inspected?: { keys: [string, Float64Array][]; grad: Float64Array; u: number } }
  | { id: number; ok: false; error: SearchWireError };

export function searchErrorToWire(error: unknown): SearchWireError {
  if (error instanceof EditError) return { message: error.message, name: error.name, code: error.code, ...(error.param !== undefined ? { param: error.param } : {}) };
  const e = error as Error;
  return { message: e?.message ?? String(error), ...(e?.name ? { name: e.name } : {}) };
}

export function searchErrorFromWire(w: SearchWireError): Error {
  if (w.name === 'EditError' && w.code) return new EditError(w.code as EditErrorCode, w.message, w.param);
  const error = new Error(w.message);
  if (w.name) error.name = w.name;
  return error;
}
