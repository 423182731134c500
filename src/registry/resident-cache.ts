/**
 * Host-memory tier of the adapter registry: compiled factors keyed by adapter id or combination key, in an
 * LRU bounded by bytes. Loads are single-flight (concurrent misses on one key share one load), and derived
 * entries (combinations) remember the ids they were built from so dropping an id drops them too.
 *
 * Eviction only forgets the cache's reference: a sequence still decoding with evicted factors keeps them
 * alive through its own reference, so nothing has to be pinned for correctness.
 */
import { LRUCache } from 'lru-cache';
import type { DeltaBinding } from '../runtime/types.ts';

export interface Resident {
  binding: DeltaBinding;
  bytes: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  loads: number;
  evictions: number;
  residentBytes: number;
  resident: number;
  maxBytes: number;
}

export interface ResidentCacheOptions {
  maxBytes: number;
  /** One hook for every departure (capacity eviction or explicit drop), so side effects live in one place. */
  onEvict?: (key: string, bytes: number, reason: 'evict' | 'delete') => void;
}

export class ResidentCache {
  private readonly lru: LRUCache<string, Resident>;
  private readonly inflight = new Map<string, Promise<Resident>>();
  /** Derived key → the ids it was built from. */
  private readonly sources = new Map<string, readonly string[]>();
  private readonly counters = { hits: 0, misses: 0, loads: 0, evictions: 0 };

  constructor(private readonly opts: ResidentCacheOptions) {
    this.lru = new LRUCache<string, Resident>({
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (r) => Math.max(1, r.bytes),
      dispose: (r, key, reason) => {
        if (reason === 'evict') this.counters.evictions++;
        if (reason === 'evict' || reason === 'delete') {
          this.sources.delete(key);
          opts.onEvict?.(key, r.bytes, reason);
        }
      },
    });
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  /** Stores an already-loaded value (a validated registration); entries over the whole budget are not kept. */
  put(key: string, value: Resident, sources?: readonly string[]): void {
    this.counters.loads++;
    this.store(key, value, sources);
  }

  /** The cached value, or the result of `load` (shared with every concurrent caller for the same key). */
  async get(key: string, load: () => Promise<Resident>, sources?: readonly string[]): Promise<Resident> {
    const hit = this.lru.get(key);
    if (hit) {
      this.counters.hits++;
      return hit;
    }
    this.counters.misses++;
    const running = this.inflight.get(key);
    if (running) return running;
    // Recorded before loading, so an unregister of a source during the load also cancels storing it.
    if (sources) this.sources.set(key, sources);
    const pending = load().then(
      (value) => {
        // Stored only if nobody invalidated the key meanwhile (an unregister during the load).
        if (this.inflight.get(key) === pending) {
          this.inflight.delete(key);
          this.counters.loads++;
          this.store(key, value, sources);
        }
        return value;
      },
      (err: unknown) => {
        if (this.inflight.get(key) === pending) {
          this.inflight.delete(key);
          if (!this.lru.has(key)) this.sources.delete(key);
        }
        throw err;
      },
    );
    this.inflight.set(key, pending);
    return pending;
  }

  /** Forgets `key`, any load of it in flight, and every derived entry built from it. */
  invalidate(key: string): void {
    this.inflight.delete(key);
    this.lru.delete(key);
    for (const [derived, ids] of [...this.sources]) {
      if (ids.includes(key)) {
        this.inflight.delete(derived);
        this.sources.delete(derived);
        this.lru.delete(derived);
      }
    }
  }

  stats(): CacheStats {
    return { ...this.counters, residentBytes: this.lru.calculatedSize, resident: this.lru.size, maxBytes: this.opts.maxBytes };
  }

  clear(): void {
    this.inflight.clear();
    this.lru.clear();
  }

  private store(key: string, value: Resident, sources?: readonly string[]): void {
    this.lru.set(key, value);
    // lru-cache silently refuses an entry larger than the whole budget; only track what it kept.
    if (sources && this.lru.has(key)) this.sources.set(key, sources);
    else this.sources.delete(key);
  }
}
