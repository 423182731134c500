/**
 * Negative cache of adapter loads: a load that failed with a client error (a bad or oversized adapter) is
 * answered from memory for `ttlMs` instead of re-reading the directory on every request. Keys carry the
 * registration generation, so unregistering or re-registering an id never serves an old failure.
 */
export class FailureCache {
  private readonly failures = new Map<string, { error: unknown; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The remembered error, while it is fresh. */
  get(key: string): unknown {
    const f = this.failures.get(key);
    if (!f) return undefined;
    if (f.until > this.now()) return f.error;
    this.failures.delete(key);
    return undefined;
  }

  remember(key: string, error: unknown): void {
    if (this.ttlMs <= 0) return;
    this.failures.set(key, { error, until: this.now() + this.ttlMs });
    // Bounded by the number of registered ids in practice; expired ones are swept here too.
    if (this.failures.size > 4096) for (const [k, f] of this.failures) if (f.until <= this.now()) this.failures.delete(k);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  get size(): number {
    return this.failures.size;
  }
}
