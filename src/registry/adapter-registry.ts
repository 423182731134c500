import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { LoadedAdapter } from '../adapters/index.ts';
import { misfit, timedLoad } from './adapter-scan.ts';
import type { AdapterEntry, RegistryOptions, RegistryStats, WeightedId } from './registry-types.ts';
import { notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import { isPatchDir } from '../patches/rws-patch.ts';
import { isAdapterId, type AdapterId } from './adapter-id.ts';
import { adapterChanged, adapterTooLarge, deltaDisabled, forRequest, isMerge, mergeSourceMissing, pinnedBudgetExceeded } from './errors.ts';
import { FailureCache } from './failure-cache.ts';
import { buildMerge } from './merge-build.ts';
import type { MergeRecipe } from './merge-recipe.ts';
import { confineAdapterDir, type Confinement } from './path-confinement.ts';
import { ResidentCache, type Resident } from './resident-cache.ts';

export { deltaDisabled } from './errors.ts';

export type { AdapterEntry, HitEvent, LoadEvent, MergeEvent, RegistryOptions, RegistryStats, WeightedId } from './registry-types.ts';

export const DEFAULT_FAILURE_TTL_MS = 10_000;
/** A cache key as spans, logs and metrics show it: without the internal `#generation` suffixes. */
const shown = (key: string) => key.replace(/#\d+/g, '');
/** A lookup whose sources keep changing under it is retried this often before a 409. */
const ATTEMPTS = 3;
const unixSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Knows every adapter and named merge by id, keeps recently used factors resident (ResidentCache), and caches
 * exact Task-Arithmetic combinations. Every cache key carries the registration generation of what it was
 * built from (`id#gen`), and a result is used only if its sources are still the registered ones after the
 * await that produced it. A failed load or registration changes nothing. An unregistered directory adapter
 * stays hidden (no rediscovery) until registered again.
 */
export class AdapterRegistry {
  private readonly entries = new Map<AdapterId, AdapterEntry>();
  /** Directory adapters found on demand, not yet listed (listed once loaded); one object per id so loads share. */
  private readonly discovered = new Map<string, AdapterEntry>();
  /** Ids being registered right now: a second registration of one is a 409, not a race. */
  private readonly registering = new Set<string>();
  private readonly hidden = new Set<string>();
  /** Directory adapters that do not fit the served base (another base's, wrong shapes): id → why. Not listed. */
  private readonly unfit = new Map<string, string>();
  private readonly cache: ResidentCache;
  private readonly failures: FailureCache;
  private generation = 0;
  /** Called with every recipe after a merge is created or deleted (persistence). */
  onMergesChanged: ((recipes: MergeRecipe[]) => Promise<void>) | undefined;

  constructor(private readonly opts: RegistryOptions) {
    const onEvict = opts.onEvict;
    this.cache = new ResidentCache({ maxBytes: opts.maxBytes, ...(onEvict ? { onEvict: (key, bytes, reason) => onEvict(shown(key), bytes, reason) } : {}) });
    this.failures = new FailureCache(opts.failureTtlMs ?? DEFAULT_FAILURE_TTL_MS, opts.now);
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
    const dir = this.opts.adapterDir;
    const target = this.opts.target;
    if (dir && existsSync(dir)) {
      for (const name of (await readdir(dir)).sort()) {
        if (this.entries.has(name as AdapterId)) continue;
        const found = this.discover(name);
        if (!found) continue;
        if (target) {
          const why = await misfit(found.path, target, found.id);
          if (why !== undefined) {
            this.unfit.set(found.id, why);
            continue;
          }
        }
        this.discovered.delete(name);
        this.entries.set(found.id, found);
      }
    }
    return this.list();
  }

  /** Adapter directories the last scan left out because they do not fit this base, with the reason. */
  unfitAdapters(): { id: string; reason: string }[] {
    return [...this.unfit].map(([id, reason]) => ({ id, reason }));
  }

  list(): AdapterEntry[] {
    return [...this.entries.values()].map((e) => ({ ...e }));
  }

  get(id: string): AdapterEntry | undefined {
    const e = this.lookup(id);
    return e && { ...e };
  }

  has(id: string): boolean {
    return this.lookup(id) !== undefined;
  }

  isResident(id: string): boolean {
    const e = this.entries.get(id as AdapterId);
    return e !== undefined && this.cache.has(this.residentKey(e));
  }

  isPinnedResident(id: string): boolean {
    const e = this.entries.get(id as AdapterId);
    return e !== undefined && this.cache.isPinned(this.residentKey(e));
  }

  /** Validates by loading; only a fully loaded adapter becomes visible. 409 if the id is taken. */
  async register(id: AdapterId, path: string, params = { id: 'id', path: 'path' }, pinned = false): Promise<AdapterEntry> {
    if (!this.enabled) throw deltaDisabled();
    this.assertFree(id, params.id);
    this.registering.add(id);
    try {
      const dir = await confineAdapterDir(resolve(path), this.adminConfinement(), params.path);
      const loaded = await this.load(id, dir, params.path);
      this.checkFits(id, loaded.bytes, pinned);
      const entry: AdapterEntry = {
        id, path: dir, source: 'admin', created: unixSeconds(), generation: ++this.generation, pinned,
        kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes,
      };
      this.hidden.delete(id);
      this.discovered.delete(id);
      this.entries.set(id, entry);
      const resident = { binding: loaded.binding, bytes: loaded.bytes };
      if (pinned) this.cache.pin(this.token(entry), resident);
      else this.cache.put(this.token(entry), resident);
      return { ...entry };
    } finally {
      this.registering.delete(id);
    }
  }

  /** Forgets the id, its resident factors and every cached combination and merge built from it. */
  unregister(id: string, param = 'id'): AdapterEntry {
    const entry = this.lookup(id);
    if (!entry) throw notFound(`adapter '${id}' is not registered`, param, 'adapter_not_found');
    if (entry.source === 'merge') throw isMerge(id, param);
    this.entries.delete(entry.id);
    this.discovered.delete(entry.id);
    this.hidden.add(entry.id);
    this.cache.invalidate(this.token(entry));
    this.failures.forget(this.token(entry));
    return { ...entry };
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
    const merged = new Map<string, WeightedId>();
    for (const p of parts) {
      const seen = merged.get(p.id);
      merged.set(p.id, seen ? { ...seen, weight: seen.weight + p.weight } : { ...p });
    }
    const canonical = [...merged.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entries = canonical.map((p) => {
        const e = this.lookup(p.id);
        if (!e) throw notFound(`adapter '${p.id}' does not exist; see GET /v1/models`, p.param ?? 'model', 'adapter_not_found');
        return e;
      });
      const before = entries.map((e) => this.tokens(e).join());
      const unchanged = () => entries.every((e, i) => this.isCurrent(e) && this.tokens(e).join() === before[i]);
      const only = canonical[0]!;
      if (canonical.length === 1 && only.weight === 1) {
        const binding = await this.entryBinding(entries[0]!, only.param ?? 'model');
        if (unchanged()) return binding;
        continue;
      }
      const bindings = await Promise.all(entries.map(async (e, i) => ({ binding: await this.entryBinding(e, canonical[i]!.param ?? 'model'), weight: canonical[i]!.weight })));
      if (!unchanged()) continue;
      const key = `combo:${entries.map((e, i) => `${this.token(e)}*${canonical[i]!.weight}`).join('+')}`;
      const combine = async (): Promise<Resident> => {
        const started = performance.now();
        const parts = canonical.map((p) => ({ id: p.id, weight: p.weight }));
        const built = buildMerge(`combo:mix(${parts.map((p) => `${p.id}*${p.weight}`).join('+')})`, bindings);
        this.opts.onMerge?.({ key: built.binding.key, parts, rank: built.rank, bytes: built.bytes, seconds: (performance.now() - started) / 1000 });
        return { binding: built.binding, bytes: built.bytes };
      };
      if (this.cache.has(key)) this.opts.onHit?.({ key: shown(key), type: 'combination' });
      const resident = await this.cache.get(key, combine, entries.flatMap((e) => this.tokens(e)));
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
    const id = recipe.id as AdapterId;
    this.assertFree(id, param);
    this.registering.add(id);
    try {
      const entry: AdapterEntry = { id, path: '', source: 'merge', created: recipe.created, generation: ++this.generation, pinned: recipe.pinned, recipe };
      const { built, sources } = await this.compileMerge(entry, 'sources');
      this.checkFits(id, built.bytes, recipe.pinned);
      if (built.truncation) recipe.truncation = built.truncation;
      Object.assign(entry, { kind: 'merge', rank: built.rank, bytes: built.bytes });
      this.entries.set(id, entry);
      this.hidden.delete(id);
      try {
        await this.onMergesChanged?.(this.recipes());
      } catch (err) {
        this.entries.delete(id);
        throw err;
      }
      // Stored only if its sources are still the ones it was built from (they may have changed meanwhile).
      if (sources.every((s) => this.isCurrent(s))) this.storeMerge(entry, { binding: built.binding, bytes: built.bytes });
      return { ...entry };
    } finally {
      this.registering.delete(id);
    }
  }

  /** Registers persisted recipes at start; nothing is built until a request names one. */
  restoreMerges(recipes: readonly MergeRecipe[]): { restored: string[]; skipped: string[] } {
    const restored: string[] = [];
    const skipped: string[] = [];
    for (const recipe of recipes) {
      if (!isAdapterId(recipe.id) || this.lookup(recipe.id) || this.isReserved(recipe.id)) {
        skipped.push(recipe.id);
        continue;
      }
      const entry: AdapterEntry = {
        id: recipe.id, path: '', source: 'merge', created: recipe.created, generation: ++this.generation,
        pinned: recipe.pinned, kind: 'merge', recipe,
      };
      this.entries.set(entry.id, entry);
      restored.push(recipe.id);
    }
    return { restored, skipped };
  }

  async deleteMerge(id: string, param = 'id'): Promise<AdapterEntry> {
    const entry = this.entries.get(id as AdapterId);
    if (!entry || entry.source !== 'merge') throw notFound(`merge '${id}' does not exist`, param, 'merge_not_found');
    this.entries.delete(entry.id);
    this.cache.invalidate(this.token(entry));
    await this.onMergesChanged?.(this.recipes());
    return { ...entry };
  }

  recipes(): MergeRecipe[] {
    return [...this.entries.values()].flatMap((e) => (e.recipe ? [e.recipe] : []));
  }

  stats(): RegistryStats {
    return { ...this.cache.stats(), registered: this.entries.size };
  }

  /** Drops every resident factor; entries stay known. Idempotent. */
  close(): void {
    this.cache.clear();
  }

  /** Cache identity of a registration: `id#gen` (adapters) or `merge:id#gen`. */
  private token(e: AdapterEntry): string {
    return e.source === 'merge' ? `merge:${e.id}#${e.generation}` : `${e.id}#${e.generation}`;
  }

  /** Every registration a cached result of `e` depends on (a merge: itself and its current sources). */
  private tokens(e: AdapterEntry): string[] {
    if (e.source !== 'merge') return [this.token(e)];
    return [this.token(e), ...e.recipe!.sources.map((s) => {
      const src = this.lookup(s.id);
      return src && src.source !== 'merge' ? this.token(src) : `missing:${s.id}`;
    })];
  }

  /** Where `e`'s factors are cached: its token, or for a merge its token plus its current sources'. */
  private residentKey(e: AdapterEntry): string {
    return e.source === 'merge' ? `${this.token(e)}[${this.tokens(e).slice(1).join(',')}]` : this.token(e);
  }

  private isCurrent(e: AdapterEntry): boolean {
    const listed = this.entries.get(e.id);
    if (listed) return listed === e;
    return this.discovered.get(e.id) === e && !this.hidden.has(e.id);
  }

  private lookup(id: string): AdapterEntry | undefined {
    return this.entries.get(id as AdapterId) ?? this.discover(id);
  }

  private entryBinding(e: AdapterEntry, param: string): Promise<DeltaBinding> {
    return e.source === 'merge' ? this.mergeBinding(e, param) : this.adapterBinding(e, param);
  }

  private async adapterBinding(entry: AdapterEntry, param: string): Promise<DeltaBinding> {
    const key = this.token(entry);
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
    if (this.isCurrent(entry)) {
      // A discovered adapter becomes listed once it loaded; a stale load never re-inserts anything.
      if (this.discovered.get(entry.id) === entry) {
        this.discovered.delete(entry.id);
        this.entries.set(entry.id, entry);
      }
      if (entry.pinned && !this.cache.isPinned(key) && this.cache.canPin(bytes)) this.cache.pin(key, resident);
    }
    return binding;
  }

  private async mergeBinding(entry: AdapterEntry, param: string): Promise<DeltaBinding> {
    const cacheKey = this.residentKey(entry);
    if (this.cache.has(cacheKey)) this.opts.onHit?.({ key: shown(cacheKey), type: 'combination' });
    let sources: AdapterEntry[] = [];
    const resident = await this.cache.get(
      cacheKey,
      async () => {
        const compiled = await this.compileMerge(entry, param);
        sources = compiled.sources;
        return { binding: compiled.built.binding, bytes: compiled.built.bytes };
      },
      this.tokens(entry),
    );
    if (entry.pinned && this.isCurrent(entry) && sources.every((s) => this.isCurrent(s)) && !this.cache.isPinned(cacheKey) && this.cache.canPin(resident.bytes)) {
      this.cache.pin(cacheKey, resident, this.tokens(entry));
    }
    return resident.binding;
  }

  /** Loads a merge's sources (409 naming one that is no longer registered) and builds its factors. */
  private async compileMerge(entry: AdapterEntry, param: string) {
    const recipe = entry.recipe!;
    const sources = recipe.sources.map((s) => {
      const src = this.lookup(s.id);
      if (!src || src.source === 'merge') throw mergeSourceMissing(entry.id, s.id, param);
      return src;
    });
    const bindings = await Promise.all(sources.map(async (src, i) => ({ binding: await this.adapterBinding(src, param), weight: recipe.sources[i]!.weight })));
    const started = performance.now();
    const built = buildMerge(entry.id, bindings, recipe.rank);
    this.opts.onMerge?.({ key: `merge:${entry.id}`, parts: recipe.sources.map((s) => ({ id: s.id, weight: s.weight })), rank: built.rank, bytes: built.bytes, seconds: (performance.now() - started) / 1000 });
    return { built, sources };
  }

  private storeMerge(entry: AdapterEntry, resident: Resident): void {
    const key = this.residentKey(entry);
    if (entry.pinned) this.cache.pin(key, resident, this.tokens(entry));
    else this.cache.put(key, resident, this.tokens(entry));
  }

  /** Refuses factors that could never stay resident (reloaded from disk on every request otherwise). */
  private checkFits(id: string, bytes: number, pinned: boolean, param: string | null = null): void {
    if (pinned && !this.cache.canPin(bytes)) throw pinnedBudgetExceeded(id, bytes, this.cache.stats());
    if (!pinned && bytes > this.cache.available) throw adapterTooLarge(id, bytes, this.cache.stats(), param);
  }

  private assertFree(id: string, param: string): void {
    if (this.has(id) || this.registering.has(id) || this.isReserved(id)) {
      throw new PatchbayError({ status: 409, code: 'adapter_exists', param, message: `adapter '${id}' is already registered; unload it first` });
    }
  }

  private dirConfinement(): Confinement {
    return { roots: this.opts.adapterDir ? [resolve(this.opts.adapterDir)] : [], setting: 'PATCHBAY_ADAPTER_DIR', showPaths: false };
  }

  private adminConfinement(): Confinement {
    const roots = this.opts.adapterRoots ?? (this.opts.adapterDir ? [this.opts.adapterDir] : []);
    return { roots: roots.map((r) => resolve(r)), setting: 'PATCHBAY_ADAPTER_ROOTS', showPaths: true };
  }

  private isReserved(id: string): boolean {
    return (this.opts.reserved?.includes(id) ?? false) || (this.opts.isTaken?.(id) ?? false);
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
    const entry: AdapterEntry = { id, path, source: 'directory', created: unixSeconds(), generation: ++this.generation, pinned: false };
    this.discovered.set(id, entry);
    return entry;
  }

  private load(id: string, dir: string, param: string): Promise<LoadedAdapter> {
    if (!this.opts.target) throw deltaDisabled(param);
    return timedLoad(this.opts, this.opts.target, id, dir, param);
  }

}
