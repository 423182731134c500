/**
 * Which adapters and merges exist, by id: the listed entries, directory adapters found on demand but not yet
 * listed, ids hidden by an unregister, directories that do not fit the base, and ids being registered right
 * now. Every registration gets a new generation, and the cache identity of an entry (`token`) carries it, so
 * a result built for an earlier registration of the same id is recognisably stale (see adapter-registry.ts).
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isPatchDir } from '../patches/rws-patch.ts';
import { PatchbayError } from '../errors.ts';
import { isAdapterId, type AdapterId } from './adapter-id.ts';
import type { AdapterEntry, RegistryOptions } from './registry-types.ts';

export const unixSeconds = () => Math.floor(Date.now() / 1000);

/** A cache key as spans, logs and metrics show it: without the internal `#generation` suffixes. */
export const shown = (key: string) => key.replace(/#\d+/g, '');

type CatalogOptions = Pick<RegistryOptions, 'adapterDir' | 'reserved' | 'isTaken' | 'isForeign'>;

export class AdapterCatalog {
  readonly entries = new Map<AdapterId, AdapterEntry>();
  /** Directory adapters found on demand, not yet listed (listed once loaded); one object per id so loads share. */
  readonly discovered = new Map<string, AdapterEntry>();
  /** Ids being registered right now: a second registration of one is a 409, not a race. */
  readonly registering = new Set<string>();
  /** Unregistered directory adapters: not rediscovered until registered again. */
  readonly hidden = new Set<string>();
  /** Directory adapters that do not fit the served base (another base's, wrong shapes): id → why. Not listed. */
  readonly unfit = new Map<string, string>();
  private generation = 0;

  constructor(private readonly opts: CatalogOptions) {}

  nextGeneration(): number {
    return ++this.generation;
  }

  /**
   * Lists every directory under the adapter dir for which `misfit` finds nothing wrong (header-only checks);
   * one that does not fit is remembered with the reason and not listed.
   */
  async scan(misfit: ((entry: AdapterEntry) => Promise<string | undefined>) | undefined): Promise<void> {
    const dir = this.opts.adapterDir;
    if (!dir || !existsSync(dir)) return;
    for (const name of (await readdir(dir)).sort()) {
      if (this.entries.has(name as AdapterId)) continue;
      const found = this.discover(name);
      if (!found) continue;
      const why = await misfit?.(found);
      if (why !== undefined) {
        this.unfit.set(found.id, why);
        continue;
      }
      this.discovered.delete(name);
      this.entries.set(found.id, found);
    }
  }

  lookup(id: string): AdapterEntry | undefined {
    return this.entries.get(id as AdapterId) ?? this.discover(id);
  }

  /** Whether `e` is still the registration its id names (a stale one never re-inserts or caches anything). */
  isCurrent(e: AdapterEntry): boolean {
    const listed = this.entries.get(e.id);
    if (listed) return listed === e;
    return this.discovered.get(e.id) === e && !this.hidden.has(e.id);
  }

  /** Makes `entry` the listed registration of its id. */
  list(entry: AdapterEntry): void {
    this.hidden.delete(entry.id);
    this.discovered.delete(entry.id);
    this.entries.set(entry.id, entry);
  }

  assertFree(id: string, param: string): void {
    if (this.lookup(id) || this.registering.has(id) || this.isReserved(id)) {
      throw new PatchbayError({ status: 409, code: 'adapter_exists', param, message: `adapter '${id}' is already registered; unload it first` });
    }
  }

  isReserved(id: string): boolean {
    return (this.opts.reserved?.includes(id) ?? false) || (this.opts.isTaken?.(id) ?? false);
  }

  /** Cache identity of a registration: `id#gen` (adapters) or `merge:id#gen`. */
  token(e: AdapterEntry): string {
    return e.source === 'merge' ? `merge:${e.id}#${e.generation}` : `${e.id}#${e.generation}`;
  }

  /** Every registration a cached result of `e` depends on (a merge: itself and its current sources). */
  tokens(e: AdapterEntry): string[] {
    if (e.source !== 'merge') return [this.token(e)];
    return [this.token(e), ...e.recipe!.sources.map((s) => {
      const src = this.lookup(s.id);
      return src && src.source !== 'merge' ? this.token(src) : `missing:${s.id}`;
    })];
  }

  /** Where `e`'s factors are cached: its token, or for a merge its token plus its current sources'. */
  residentKey(e: AdapterEntry): string {
    return e.source === 'merge' ? `${this.token(e)}[${this.tokens(e).slice(1).join(',')}]` : this.token(e);
  }

  private discover(id: string): AdapterEntry | undefined {
    const dir = this.opts.adapterDir;
    if (!dir || !isAdapterId(id) || this.hidden.has(id) || this.isReserved(id)) return undefined;
    const known = this.discovered.get(id);
    if (known) return known;
    const path = join(dir, id);
    if (!existsSync(path) || !statSync(path).isDirectory() || this.opts.isForeign?.(path)) return undefined;
    // Robustness patches share the directory but are not adapters (src/patches/, GET /admin/patches).
    if (isPatchDir(path)) return undefined;
    const entry: AdapterEntry = { id, path, source: 'directory', created: unixSeconds(), generation: this.nextGeneration(), pinned: false };
    this.discovered.set(id, entry);
    return entry;
  }
}
