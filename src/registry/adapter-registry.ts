import { resolve } from 'node:path';
import type { LoadedAdapter } from '../adapters/index.ts';
import { misfit, timedLoad } from './adapter-scan.ts';
import type { AdapterEntry, RegistryOptions, RegistryStats, WeightedId } from './registry-types.ts';
import { notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import { adapterId, type AdapterId } from './adapter-id.ts';
import { AdapterCatalog, shown, unixSeconds } from './adapter-catalog.ts';
import type { AdapterRecord } from './adapter-store.ts';
import { adapterChanged, adapterTooLarge, deltaDisabled, forRequest, isMerge, pinnedBudgetExceeded } from './errors.ts';
import { FailureCache } from './failure-cache.ts';
import { buildMerge } from './merge-build.ts';
import type { MergeRecipe } from './merge-recipe.ts';
import { NamedMerges } from './named-merges.ts';
import { confineAdapterDir, type Confinement } from './path-confinement.ts';
import { ResidentCache, type Resident } from './resident-cache.ts';

export { deltaDisabled } from './errors.ts';

export type { AdapterEntry, HitEvent, LoadEvent, MergeEvent, RegistryOptions, RegistryStats, WeightedId } from './registry-types.ts';

export const DEFAULT_FAILURE_TTL_MS = 10_000;
/** A lookup whose sources keep changing under it is retried this often before a 409. */
const ATTEMPTS = 3;

/**
 * Knows every adapter and named merge by id (AdapterCatalog), keeps recently used factors resident
 * (ResidentCache), and caches exact Task-Arithmetic combinations. Every cache key carries the registration
 * generation of what it was built from (`id#gen`), and a result is used only if its sources are still the
 * registered ones after the await that produced it. A failed load or registration changes nothing. An
 * unregistered directory adapter stays hidden (no rediscovery) until registered again. Admin registrations
 * are reported to `onAdaptersChanged` (persistence: adapter-store.ts) and restored by `restoreAdapters`.
 */
export class AdapterRegistry {
  private readonly catalog: AdapterCatalog;
  private readonly cache: ResidentCache;
  private readonly failures: FailureCache;
  private readonly merges: NamedMerges;
  /** Persisted admin registrations that did not pass validation at start: kept in the store, not served. */
  private readonly dormant = new Map<string, AdapterRecord>();
  /** Called with every admin registration (and dormant record) after one is added or removed (persistence). */
  onAdaptersChanged: ((records: AdapterRecord[]) => Promise<void>) | undefined;
  /**
   * Awaited after an admin registration succeeded, with the graph layers the adapter targets (the server
   * builds its reduced-branch session there: server/branches-ahead.ts). Must not throw.
   */
  onRegistered: ((entry: AdapterEntry, layers: readonly string[]) => Promise<void>) | undefined;

  constructor(private readonly opts: RegistryOptions) {
    const onEvict = opts.onEvict;
    this.cache = new ResidentCache({ maxBytes: opts.maxBytes, ...(onEvict ? { onEvict: (key, bytes, reason) => onEvict(shown(key), bytes, reason) } : {}) });
    this.failures = new FailureCache(opts.failureTtlMs ?? DEFAULT_FAILURE_TTL_MS, opts.now);
    this.catalog = new AdapterCatalog(opts);
    this.merges = new NamedMerges({
      catalog: this.catalog,
      cache: this.cache,
      opts,
      adapterBinding: (e, param) => this.adapterBinding(e, param),
      checkFits: (id, bytes, pinned, param) => this.checkFits(id, bytes, pinned, param),
    });
  }

  /** Called with every recipe after a merge is created or deleted (persistence). */
  get onMergesChanged(): ((recipes: MergeRecipe[]) => Promise<void>) | undefined {
    return this.merges.onChanged;
  }

  set onMergesChanged(fn: ((recipes: MergeRecipe[]) => Promise<void>) | undefined) {
    this.merges.onChanged = fn;
  }

  /** The byte-bounded cache, shared with the generator registry: generated factors count against the same budget. */
  get residentCache(): ResidentCache {
    return this.cache;
  }

  /** False when the server runs without delta branches: every load is refused. */
  get enabled(): boolean {
    return this.opts.target !== undefined;
  }

  /**
   * Records every adapter directory under `adapterDir` that fits the served base, without loading factors:
   * each is checked header-only (AdapterKind.check — base_model_name_or_path against the base's names when
   * both give one, then module names and shapes against the graph). One made for another base is not
   * listed; asking for it by id still answers the 400 that says why. A directory that is merely broken
   * (bad JSON, corrupt safetensors) stays listed and fails where it is used, as before.
   */
  async scan(): Promise<AdapterEntry[]> {
    const target = this.opts.target;
    await this.catalog.scan(target ? (e) => misfit(e.path, target, e.id) : undefined);
    return this.list();
  }

  /** Adapter directories the last scan left out because they do not fit this base, with the reason. */
  unfitAdapters(): { id: string; reason: string }[] {
    return [...this.catalog.unfit].map(([id, reason]) => ({ id, reason }));
  }

  list(): AdapterEntry[] {
    return [...this.catalog.entries.values()].map((e) => ({ ...e }));
  }

  get(id: string): AdapterEntry | undefined {
    const e = this.catalog.lookup(id);
    return e && { ...e };
  }

  has(id: string): boolean {
    return this.catalog.lookup(id) !== undefined;
  }

  isResident(id: string): boolean {
    const e = this.catalog.entries.get(id as AdapterId);
    return e !== undefined && this.cache.has(this.catalog.residentKey(e));
  }

  isPinnedResident(id: string): boolean {
    const e = this.catalog.entries.get(id as AdapterId);
    return e !== undefined && this.cache.isPinned(this.catalog.residentKey(e));
  }

  /**
   * Validates by loading; only a fully loaded adapter becomes visible, and it is persisted before the call
   * answers (a failed write undoes the registration). 409 if the id is taken.
   */
  async register(id: AdapterId, path: string, params = { id: 'id', path: 'path' }, pinned = false, created = unixSeconds()): Promise<AdapterEntry> {
    if (!this.enabled) throw deltaDisabled();
    const { catalog } = this;
    catalog.assertFree(id, params.id);
    catalog.registering.add(id);
    try {
      const dir = await confineAdapterDir(resolve(path), this.adminConfinement(), params.path);
      const loaded = await this.load(id, dir, params.path);
      this.checkFits(id, loaded.bytes, pinned);
      const entry: AdapterEntry = {
        id, path: dir, source: 'admin', created, generation: catalog.nextGeneration(), pinned,
        kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes,
      };
      const wasHidden = catalog.hidden.has(id);
      const dormant = this.dormant.get(id);
      catalog.list(entry);
      this.dormant.delete(id);
      try {
        await this.onAdaptersChanged?.(this.adapterRecords());
      } catch (err) {
        catalog.entries.delete(id);
        if (wasHidden) catalog.hidden.add(id);
        if (dormant) this.dormant.set(id, dormant);
        throw err;
      }
      const resident = { binding: loaded.binding, bytes: loaded.bytes };
      if (pinned) this.cache.pin(catalog.token(entry), resident);
      else this.cache.put(catalog.token(entry), resident);
      await this.onRegistered?.({ ...entry }, loaded.modules);
      return { ...entry };
    } finally {
      catalog.registering.delete(id);
    }
  }

  /**
   * Forgets the id, its resident factors and every cached combination and merge built from it; an admin
   * registration is also removed from the store (as is a dormant record of that id, which answers as deleted).
   */
  async unregister(id: string, param = 'id'): Promise<AdapterEntry> {
    const { catalog } = this;
    const entry = catalog.lookup(id);
    if (!entry) {
      const record = this.dormant.get(id);
      if (!record) throw notFound(`adapter '${id}' is not registered`, param, 'adapter_not_found');
      this.dormant.delete(id);
      await this.onAdaptersChanged?.(this.adapterRecords());
      return { id: record.id as AdapterId, path: record.path, source: 'admin', created: record.created, generation: 0, pinned: record.pinned };
    }
    if (entry.source === 'merge') throw isMerge(id, param);
    catalog.entries.delete(entry.id);
    catalog.discovered.delete(entry.id);
    catalog.hidden.add(entry.id);
    this.cache.invalidate(catalog.token(entry));
    this.failures.forget(catalog.token(entry));
    if (entry.source === 'admin') await this.onAdaptersChanged?.(this.adapterRecords());
    return { ...entry };
  }

  /**
   * Registers persisted admin adapters again at start, each through `register`'s own validation (confinement,
   * load, finiteness, budget). One that fails is skipped with the reason and kept as a dormant record.
   */
  async restoreAdapters(records: readonly AdapterRecord[]): Promise<{ restored: string[]; skipped: { id: string; reason: string }[] }> {
    const restored: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    for (const r of records) {
      try {
        await this.register(adapterId(r.id), r.path, undefined, r.pinned, r.created);
        restored.push(r.id);
      } catch (err) {
        skipped.push({ id: r.id, reason: err instanceof Error ? err.message : String(err) });
        this.dormant.set(r.id, r);
      }
    }
    return { restored, skipped };
  }

  /** What the adapter store holds: every admin registration, then dormant records. */
  adapterRecords(): AdapterRecord[] {
    const live = [...this.catalog.entries.values()]
      .filter((e) => e.source === 'admin')
      .map((e) => ({ id: e.id, path: e.path, pinned: e.pinned, created: e.created }));
    return [...live, ...[...this.dormant.values()].filter((r) => !this.catalog.entries.has(r.id as AdapterId))];
  }

  /** The factors of one adapter or merge, loaded on demand. 404 for unknown ids, 400 for ones that do not fit. */
  async binding(id: string, param = 'model'): Promise<DeltaBinding> {
    return this.combination([{ id, weight: 1, param }]);
  }

  /**
   * Exact Task Arithmetic: ΔW = Σ wᵢ·ΔWᵢ by concatenating factors along the rank (see adapters/combine.ts).
   * Parts are canonicalised first — repeated ids merged by summing weights, sorted by id — so one mix has
   * one cache key whatever order the request listed it in. If any source is unregistered or re-registered
   * while its factors load, the result is dropped and the lookup starts again from the current registrations.
   */
  async combination(parts: readonly WeightedId[]): Promise<DeltaBinding> {
    const { catalog } = this;
    const merged = new Map<string, WeightedId>();
    for (const p of parts) {
      const seen = merged.get(p.id);
      merged.set(p.id, seen ? { ...seen, weight: seen.weight + p.weight } : { ...p });
    }
    const canonical = [...merged.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entries = canonical.map((p) => {
        const e = catalog.lookup(p.id);
        if (!e) throw notFound(`adapter '${p.id}' does not exist; see GET /v1/models`, p.param ?? 'model', 'adapter_not_found');
        return e;
      });
      const before = entries.map((e) => catalog.tokens(e).join());
      const unchanged = () => entries.every((e, i) => catalog.isCurrent(e) && catalog.tokens(e).join() === before[i]);
      const only = canonical[0]!;
      if (canonical.length === 1 && only.weight === 1) {
        const binding = await this.entryBinding(entries[0]!, only.param ?? 'model');
        if (unchanged()) return binding;
        continue;
      }
      const bindings = await Promise.all(entries.map(async (e, i) => ({ binding: await this.entryBinding(e, canonical[i]!.param ?? 'model'), weight: canonical[i]!.weight })));
      if (!unchanged()) continue;
      const key = `combo:${entries.map((e, i) => `${catalog.token(e)}*${canonical[i]!.weight}`).join('+')}`;
      const combine = async (): Promise<Resident> => {
        const started = performance.now();
        const parts = canonical.map((p) => ({ id: p.id, weight: p.weight }));
        const built = await buildMerge(`combo:mix(${parts.map((p) => `${p.id}*${p.weight}`).join('+')})`, bindings);
        this.opts.onMerge?.({ key: built.binding.key, parts, rank: built.rank, bytes: built.bytes, seconds: (performance.now() - started) / 1000 });
        return { binding: built.binding, bytes: built.bytes };
      };
      if (this.cache.has(key)) this.opts.onHit?.({ key: shown(key), type: 'combination' });
      const resident = await this.cache.get(key, combine, entries.flatMap((e) => catalog.tokens(e)));
      if (unchanged()) return resident.binding;
    }
    throw adapterChanged(canonical.map((p) => p.id));
  }

  /**
   * Creates a named merge from a validated recipe (sources resolved, weights computed: see merges.ts):
   * builds it now (so a bad source or an unmet pin budget is refused before anything is registered), then
   * registers it and persists every recipe. Returns the recipe with its truncation report.
   */
  async createMerge(recipe: MergeRecipe, param = 'id'): Promise<AdapterEntry> {
    if (!this.enabled) throw deltaDisabled();
    return this.merges.create(recipe, param);
  }

  /** Registers persisted recipes at start; nothing is built until a request names one. */
  restoreMerges(recipes: readonly MergeRecipe[]): { restored: string[]; skipped: string[] } {
    return this.merges.restore(recipes);
  }

  deleteMerge(id: string, param = 'id'): Promise<AdapterEntry> {
    return this.merges.delete(id, param);
  }

  recipes(): MergeRecipe[] {
    return this.merges.recipes();
  }

  stats(): RegistryStats {
    return { ...this.cache.stats(), registered: this.catalog.entries.size };
  }

  /** Drops every resident factor; entries stay known. Idempotent. */
  close(): void {
    this.cache.clear();
  }

  private entryBinding(e: AdapterEntry, param: string): Promise<DeltaBinding> {
    return e.source === 'merge' ? this.merges.binding(e, param) : this.adapterBinding(e, param);
  }

  private async adapterBinding(entry: AdapterEntry, param: string): Promise<DeltaBinding> {
    const { catalog } = this;
    const key = catalog.token(entry);
    const failed = this.failures.get(key);
    if (failed !== undefined) throw forRequest(failed, param, entry.id, entry.path);
    if (this.cache.has(key)) this.opts.onHit?.({ key: entry.id, type: 'adapter' });
    const resident = await this.cache.get(key, async () => {
      try {
        const label = entry.source === 'directory' ? `'${entry.id}'` : entry.path;
        const dir = await confineAdapterDir(entry.path, entry.source === 'directory' ? this.dirConfinement() : this.adminConfinement(), param, label);
        const loaded = await this.load(entry.id, dir, param);
        // This registration's own record: harmless even if it went stale meanwhile.
        Object.assign(entry, { kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes });
        this.checkFits(entry.id, loaded.bytes, entry.pinned, param);
        return { binding: loaded.binding, bytes: loaded.bytes };
      } catch (err) {
        if (err instanceof PatchbayError && err.status < 500) this.failures.remember(key, err);
        throw err;
      }
    });
    const { binding, bytes } = resident;
    if (catalog.isCurrent(entry)) {
      // A discovered adapter becomes listed once it loaded; a stale load never re-inserts anything.
      if (catalog.discovered.get(entry.id) === entry) {
        catalog.discovered.delete(entry.id);
        catalog.entries.set(entry.id, entry);
      }
      if (entry.pinned && !this.cache.isPinned(key) && this.cache.canPin(bytes)) this.cache.pin(key, resident);
    }
    return binding;
  }

  /** Refuses factors that could never stay resident (reloaded from disk on every request otherwise). */
  private checkFits(id: string, bytes: number, pinned: boolean, param: string | null = null): void {
    if (pinned && !this.cache.canPin(bytes)) throw pinnedBudgetExceeded(id, bytes, this.cache.stats());
    if (!pinned && bytes > this.cache.available) throw adapterTooLarge(id, bytes, this.cache.stats(), param);
  }

  private dirConfinement(): Confinement {
    return { roots: this.opts.adapterDir ? [resolve(this.opts.adapterDir)] : [], setting: 'PATCHBAY_ADAPTER_DIR', showPaths: false };
  }

  private adminConfinement(): Confinement {
    const roots = this.opts.adapterRoots ?? (this.opts.adapterDir ? [this.opts.adapterDir] : []);
    return { roots: roots.map((r) => resolve(r)), setting: 'PATCHBAY_ADAPTER_ROOTS', showPaths: true };
  }

  private load(id: string, dir: string, param: string): Promise<LoadedAdapter> {
    if (!this.opts.target) throw deltaDisabled(param);
    return timedLoad(this.opts, this.opts.target, id, dir, param);
  }
}
