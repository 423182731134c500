/**
 * Host-memory tier of the adapter registry: compiled factors keyed by adapter id or combination key, in an
 * LRU bounded by bytes. Loads are single-flight (concurrent misses on one key share one load), and derived
 * entries (combinations) remember the ids they were built from so dropping an id drops them too.
 *
 * Eviction only forgets the cache's reference: a sequence still decoding with evicted factors keeps them
 * alive through its own reference. The cache keeps a WeakRef to every evicted value, so a lookup that misses
 * while some sequence still holds those factors takes them back instead of loading a second copy (one copy
 * in memory, not two); once nothing holds them the garbage collector frees them and the next miss loads.
 *
 * Pinned entries live beside the LRU, never evicted; the LRU holds at most `maxBytes − pinnedBytes`.
 */
import { LRUCache } from 'lru-cache';
import type { DeltaBinding } from '../runtime/types.ts';

export interface Resident {
  binding: DeltaBinding;
  bytes: number;
}

export interface CacheStats {
  hits: number;
  /** Misses answered by factors a running sequence still held after eviction (no load). */
  revived: number;
  misses: number;
  loads: number;
  evictions: number;
  residentBytes: number;
  resident: number;
  pinnedBytes: number;
  pinned: number;
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
  private readonly counters = { hits: 0, revived: 0, misses: 0, loads: 0, evictions: 0 };
  private readonly pinned = new Map<string, Resident>();
  private pinnedBytes = 0;
  /** Evicted values some sequence may still hold (see the file comment). */
  private readonly evicted = new Map<string, { binding: WeakRef<DeltaBinding>; bytes: number }>();

  constructor(private readonly opts: ResidentCacheOptions) {
    this.lru = new LRUCache<string, Resident>({
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (r) => Math.max(1, r.bytes),
      dispose: (r, key, reason) => {
        if (reason === 'evict') {
          this.counters.evictions++;
          // Sequences hold the binding, not the Resident wrapper: the weak reference must point at it.
          this.evicted.set(key, { binding: new WeakRef(r.binding), bytes: r.bytes });
        }
        if (reason === 'evict' || reason === 'delete') {
          this.sources.delete(key);
          opts.onEvict?.(key, r.bytes, reason);
        }
      },
    });
  }

  has(key: string): boolean {
    return this.pinned.has(key) || this.lru.has(key);
  }

  isPinned(key: string): boolean {
    return this.pinned.has(key);
  }

  /** Whether `bytes` more pinned factors fit the budget next to those already pinned. */
  canPin(bytes: number): boolean {
    return this.pinnedBytes + bytes <= this.opts.maxBytes;
  }

  /** Budget an unpinned entry may use (what pinned entries leave). */
  get available(): number {
    return this.opts.maxBytes - this.pinnedBytes;
  }

  /** Keeps `value` outside the LRU, never evicted, until invalidated. The caller checked `canPin`. */
  pin(key: string, value: Resident, sources?: readonly string[]): void {
    this.lru.delete(key);
    const old = this.pinned.get(key);
    if (old) this.pinnedBytes -= old.bytes;
    this.pinned.set(key, value);
    this.pinnedBytes += value.bytes;
    if (sources) this.sources.set(key, sources);
    this.shrink();
  }

  /** Stores an already-loaded value (a validated registration); entries over the whole budget are not kept. */
  put(key: string, value: Resident, sources?: readonly string[]): void {
    this.counters.loads++;
    this.store(key, value, sources);
  }

  /** The cached value, or the result of `load` (shared with every concurrent caller for the same key). */
  async get(key: string, load: () => Promise<Resident>, sources?: readonly string[]): Promise<Resident> {
    const hit = this.pinned.get(key) ?? this.lru.get(key);
    if (hit) {
      this.counters.hits++;
      return hit;
    }
    const gone = this.evicted.get(key);
    const binding = gone?.binding.deref();
    if (gone && binding) {
      const held = { binding, bytes: gone.bytes };
      this.counters.revived++;
      this.evicted.delete(key);
      this.store(key, held, sources);
      return held;
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
    this.drop(key);
    for (const [derived, ids] of [...this.sources]) {
      if (ids.includes(key)) {
        this.drop(derived);
        this.sources.delete(derived);
      }
    }
  }

  stats(): CacheStats {
    return {
      ...this.counters,
      residentBytes: this.lru.calculatedSize + this.pinnedBytes,
      resident: this.lru.size + this.pinned.size,
      pinnedBytes: this.pinnedBytes,
      pinned: this.pinned.size,
      maxBytes: this.opts.maxBytes,
    };
  }

  clear(): void {
    this.inflight.clear();
    this.lru.clear();
    this.pinned.clear();
    this.pinnedBytes = 0;
    this.evicted.clear();
  }

  private drop(key: string): void {
    this.inflight.delete(key);
    this.evicted.delete(key);
    this.lru.delete(key);
    const p = this.pinned.get(key);
    if (p) {
      this.pinned.delete(key);
      this.pinnedBytes -= p.bytes;
      this.opts.onEvict?.(key, p.bytes, 'delete');
    }
  }

  private store(key: string, value: Resident, sources?: readonly string[]): void {
    // Only what fits beside the pinned entries is kept (the registry refuses single adapters that cannot fit).
    if (Math.max(1, value.bytes) <= this.available) {
      this.lru.set(key, value);
      this.shrink();
    }
    if (sources && this.lru.has(key)) this.sources.set(key, sources);
    else this.sources.delete(key);
  }

  /** Evicts least recently used entries until the LRU fits what the pinned entries leave of the budget. */
  private shrink(): void {
    while (this.lru.size > 0 && this.lru.calculatedSize > this.available) this.lru.pop();
  }
}
