/**
 * The binding of a request that carries adapters *and* per-request patches: adapters ⊕ patches
 * (combine.ts) copies every factor of both — the patch's are dense, rank min(d_in, d_out) — which measured
 * 18–216 ms (median 43 ms, 8.5 MiB of factors) per request on the tiny model under load (bench:patches,
 * section 5), on the serving thread. So the last few combinations are kept.
 *
 * An entry is used only if both inputs are the very objects it was built from: the adapter registry and
 * the patch manager hand out the same binding while it is cached there, and a reloaded adapter or a
 * re-registered patch is a new object, so a hit can never be stale.
 */
import { LRUCache } from 'lru-cache';
import type { DeltaBinding } from '../runtime/types.ts';
import { combineBindings } from './combine.ts';

interface Entry {
  adapters: DeltaBinding;
  patched: DeltaBinding;
  combined: DeltaBinding;
  bytes: number;
}

export interface CombinationCacheOptions {
  /** Most combinations kept (default 4). */
  max?: number;
  /** Most factor bytes kept (default 128 MiB); a larger combination is built every time, never cached. */
  maxBytes?: number;
}

export class CombinationCache {
  private readonly entries: LRUCache<string, Entry>;
  hits = 0;
  misses = 0;

  constructor(opts: CombinationCacheOptions = {}) {
    this.entries = new LRUCache<string, Entry>({ max: opts.max ?? 4, maxSize: opts.maxBytes ?? 128 * 2 ** 20, sizeCalculation: (e) => Math.max(1, e.bytes) });
  }

  /** adapters ⊕ patched (weights 1, 1), from the cache when both inputs are unchanged. */
  combine(adapters: DeltaBinding, patched: DeltaBinding): DeltaBinding {
    const key = `${adapters.key}+${patched.key}`;
    const hit = this.entries.get(key);
    if (hit && hit.adapters === adapters && hit.patched === patched) {
      this.hits++;
      return hit.combined;
    }
    this.misses++;
    const combined = combineBindings([{ binding: adapters, weight: 1 }, { binding: patched, weight: 1 }], key);
    let bytes = 0;
    for (const f of combined.layers.values()) bytes += 4 * (f.a.length + f.b.length);
    this.entries.set(key, { adapters, patched, combined, bytes });
    return combined;
  }
}
