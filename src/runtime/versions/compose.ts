/**
 * The arithmetic of a base version, as one pure function that runs where it is cheapest: in the session
 * worker that will build the version (the serving thread only posts the inputs), or on the serving thread
 * with `PATCHBAY_SESSION_WORKERS=off`. For each changed initializer t:
 *
 *     W[t] = (replacement of t, if a part gives one, else W_0[t]) + Σ_parts add[t]    (float32, in part order)
 *
 * read fresh from the pristine bytes every time (restore, never subtract). Results live in shared memory,
 * so the worker that composes them, the sessions built from them and the serving thread (which keeps them
 * for audits) all see one copy.
 */
import { BaseVersionError } from './base-versions-error.ts';

export interface ComposePart {
  source: string;
  replace?: readonly (readonly [string, Float32Array])[];
  add?: readonly (readonly [string, Float32Array])[];
  /** Scan this part for non-finite values (the part being published; the others were scanned before). */
  check: boolean;
}

/** Where an initializer's float32 data sits in the pristine bytes. */
export interface ComposeSlot {
  offset: number;
  length: number;
}

export function composeWeights(pristine: Uint8Array, slots: ReadonlyMap<string, ComposeSlot>, parts: readonly ComposePart[]): Map<string, Float32Array> {
  for (const p of parts) if (p.check) checkFinite(p);
  const out = new Map<string, Float32Array>();
  const fresh = (name: string) => {
    const slot = slots.get(name);
    if (!slot) throw new BaseVersionError('unknown_initializer', `${name} is not a float32 weight of the base model`);
    return new Float32Array(new SharedArrayBuffer(slot.length * 4));
  };
  for (const p of parts) {
    for (const [name, data] of p.replace ?? []) {
      const w = fresh(name);
      w.set(data);
      out.set(name, w);
    }
  }
  for (const p of parts) {
    for (const [name, delta] of p.add ?? []) {
      let w = out.get(name);
      if (!w) {
        w = fresh(name);
        const slot = slots.get(name)!;
        // The model bytes need not be 4-byte aligned: copy bytes, then read as float32.
        new Uint8Array(w.buffer).set(pristine.subarray(slot.offset, slot.offset + slot.length * 4));
        out.set(name, w);
      }
      for (let i = 0; i < w.length; i++) w[i]! += delta[i]!;
    }
  }
  return out;
}

function checkFinite(p: ComposePart): void {
  for (const [kind, list] of [['replace', p.replace], ['add', p.add]] as const) {
    for (const [name, data] of list ?? []) {
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i]!)) throw new BaseVersionError('non_finite', `${p.source}: ${kind} tensor for ${name} has a non-finite value at ${i}`);
      }
    }
  }
}
