/** A small synthetic two-layer RLSEdit setup for log/replay/rollback tests (no model needed). */
import type { LayerEdit, LayerSpec } from '../../src/edits/edit-state.ts';
import { EditStore, type EditStoreOptions } from '../../src/edits/edit-store.ts';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function smallSpecs(): LayerSpec[] {
  const r = rng(11);
  return [
    { name: 'a', dK: 8, dV: 4 },
    { name: 'b', dK: 6, dV: 5 },
  ].map(({ name, dK, dV }) => {
    const m = Array.from({ length: dK * dK }, r);
    const mom2 = new Float32Array(dK * dK);
    for (let i = 0; i < dK; i++) for (let j = 0; j < dK; j++) for (let k = 0; k < dK; k++) mom2[i * dK + j]! += (m[i * dK + k]! * m[j * dK + k]!) / dK;
    return { name, initializer: `${name}.weight`, dK, dV, w0: Float32Array.from({ length: dK * dV }, r), mom2 };
  });
}

export function smallOptions(dir: string, over: Partial<EditStoreOptions> = {}): EditStoreOptions {
  return { dir, specs: smallSpecs(), lambda: 1, mu: 0.5, fingerprint: 'small-test-v1', snapshotEvery: 7, keepSnapshots: 2, ...over };
}

/** Edit number `i` of a deterministic stream (u varies 1..3, both layers). */
export function smallEdit(i: number): LayerEdit[] {
  const r = rng(1000 + i);
  return smallSpecs().map((s) => {
    const u = 1 + (i % 3);
    return { layer: s.name, u, keys: Float64Array.from({ length: u * s.dK }, r), values: Float64Array.from({ length: u * s.dV }, () => 2 * r()) };
  });
}

export async function openSmall(dir: string, over: Partial<EditStoreOptions> = {}): Promise<EditStore> {
  return EditStore.open(smallOptions(dir, over));
}
