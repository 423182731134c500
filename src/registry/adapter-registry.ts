import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { checkAdapter, combineBindings, combinationKey, factorFootprint, loadAdapter, type AttachTarget, type LoadedAdapter } from '../adapters/index.ts';
import { badRequest, notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import { isPatchDir } from '../patches/rws-patch.ts';
import { isAdapterId, type AdapterId } from './adapter-id.ts';
import { deltaDisabled, forRequest } from './errors.ts';
import { ResidentCache, type CacheStats, type Resident } from './resident-cache.ts';

export { deltaDisabled } from './errors.ts';

export interface AdapterEntry {
  id: AdapterId;
  path: string;
  /** `directory`: found under the adapter dir; `admin`: registered through the API. */
  source: 'directory' | 'admin';
  /** Unix seconds it became known. */
  created: number;
  /** Known once loaded. */
  kind?: string;
  rank?: number;
  bytes?: number;
}

export interface RegistryStats extends CacheStats {
  registered: number;
}

/** One finished (or failed) load from disk, for the `adapter.load` span, histogram and logs. */
export interface LoadEvent {
  id: string;
  seconds: number;
  kind?: string;
  rank?: number;
  bytes?: number;
  error?: unknown;
}

/** One combination compiled into factors (a cache miss), for the `adapter.merge` span. */
export interface MergeEvent {
  /** The canonical cache key (`combo:…`). */
  key: string;
  /** Canonical parts: repeated ids summed, sorted by id. */
  parts: readonly { id: string; weight: number }[];
  /** Largest per-layer rank of the result (the parts' ranks add up). */
  rank: number;
  bytes: number;
  seconds: number;
}

/** A lookup served from host memory: nothing was loaded or merged. */
export interface HitEvent {
  key: string;
  type: 'adapter' | 'combination';
}

export interface RegistryOptions {
  /** Scanned for one sub-directory per adapter; an unknown id is also looked up here on demand. */
  adapterDir?: string;
  /** Byte budget of resident factors (adapters and cached combinations together). */
  maxBytes: number;
  /** What adapters must fit; undefined when the base graph has no delta branches (adapters refused). */
  target: AttachTarget | undefined;
  /** Ids that may never name an adapter (the base model's). */
  reserved?: readonly string[];
  onEvict?: (key: string, bytes: number, reason: 'evict' | 'delete') => void;
  onLoad?: (event: LoadEvent) => void;
  onMerge?: (event: MergeEvent) => void;
  onHit?: (event: HitEvent) => void;
}

export interface WeightedId {
  id: string;
  weight: number;
  /** Request field that named it, for 404/400 messages (default `model`). */
  param?: string;
}

/** Check failures that mean "made for another base", as opposed to a damaged or unsupported file. */
const MISFIT_CODES = new Set(['adapter_base_mismatch', 'adapter_shape_mismatch', 'adapter_not_attachable']);

const unixSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Knows every adapter by id, keeps recently used factors resident (see ResidentCache), and caches exact
 * Task-Arithmetic combinations under a canonical key. A failed load or registration changes nothing.
 * An unregistered directory adapter stays hidden (no rediscovery) until registered again.
 */
export class AdapterRegistry {
  private readonly entries = new Map<AdapterId, AdapterEntry>();
  /** Ids being registered right now: a second registration of one is a 409, not a race. */
  private readonly registering = new Set<string>();
  private readonly hidden = new Set<string>();
  /** Directory adapters that do not fit the served base (another base's, wrong shapes): id → why. Not listed. */
  private readonly unfit = new Map<string, string>();
  private readonly cache: ResidentCache;

  constructor(private readonly opts: RegistryOptions) {
    this.cache = new ResidentCache({ maxBytes: opts.maxBytes, ...(opts.onEvict ? { onEvict: opts.onEvict } : {}) });
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
          const why = await checkAdapter(found.path, target, found.id).then(
            () => undefined,
            (err: unknown) => (err instanceof PatchbayError && MISFIT_CODES.has(err.code) ? err.message : undefined),
          );
          if (why !== undefined) {
            this.unfit.set(found.id, why);
            continue;
          }
        }
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
    const e = this.entries.get(id as AdapterId) ?? this.discover(id);
    return e && { ...e };
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  isResident(id: string): boolean {
    return this.cache.has(id);
  }

  /** Validates by loading; only a fully loaded adapter becomes visible. 409 if the id is taken. */
  async register(id: AdapterId, path: string, params = { id: 'id', path: 'path' }): Promise<AdapterEntry> {
    if (!this.enabled) throw deltaDisabled();
    if (this.has(id) || this.registering.has(id) || this.isReserved(id)) {
      throw new PatchbayError({ status: 409, code: 'adapter_exists', param: params.id, message: `adapter '${id}' is already registered; unload it first` });
    }
    const dir = resolve(path);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw badRequest(`adapter path ${path} is not a directory on the server`, params.path, 'adapter_path_not_found');
    }
    this.registering.add(id);
    try {
      const loaded = await this.load(id, dir, params.path);
      const entry: AdapterEntry = { id, path: dir, source: 'admin', created: unixSeconds(), kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes };
      this.hidden.delete(id);
      this.entries.set(id, entry);
      this.cache.put(id, { binding: loaded.binding, bytes: loaded.bytes });
      return { ...entry };
    } finally {
      this.registering.delete(id);
    }
  }

  /** Forgets the id, its resident factors and every cached combination that used it. */
  unregister(id: string, param = 'id'): AdapterEntry {
    const entry = this.get(id);
    if (!entry) throw notFound(`adapter '${id}' is not registered`, param, 'adapter_not_found');
    this.entries.delete(entry.id);
    this.hidden.add(entry.id);
    this.cache.invalidate(entry.id);
    return entry;
  }

  /** The factors of one adapter, loaded on demand. 404 for unknown ids, 400 for adapters that do not fit. */
  async binding(id: string, param = 'model'): Promise<DeltaBinding> {
    const entry = this.entries.get(id as AdapterId) ?? this.discover(id);
    if (!entry) throw notFound(`adapter '${id}' does not exist; see GET /v1/models`, param, 'adapter_not_found');
    if (this.cache.has(entry.id)) this.opts.onHit?.({ key: entry.id, type: 'adapter' });
    const resident = await this.cache.get(entry.id, async () => {
      const loaded = await this.load(entry.id, entry.path, param);
      // Learnt on first load; a discovered adapter becomes listed once it loaded, unless dropped meanwhile.
      Object.assign(entry, { kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes });
      if (!this.hidden.has(entry.id)) this.entries.set(entry.id, entry);
      return { binding: loaded.binding, bytes: loaded.bytes };
    });
    return resident.binding;
  }

  /**
   * Exact Task Arithmetic: ΔW = Σ wᵢ·ΔWᵢ by concatenating factors along the rank (see adapters/combine.ts).
   * Parts are canonicalised first — repeated ids merged by summing weights, sorted by id — so one mix has
   * one cache key whatever order the request listed it in.
   */
  async combination(parts: readonly WeightedId[]): Promise<DeltaBinding> {
    const merged = new Map<string, WeightedId>();
    for (const p of parts) {
      const seen = merged.get(p.id);
      merged.set(p.id, seen ? { ...seen, weight: seen.weight + p.weight } : { ...p });
    }
    const canonical = [...merged.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const only = canonical[0];
    if (canonical.length === 1 && only && only.weight === 1) return this.binding(only.id, only.param);
    const bindings = await Promise.all(canonical.map(async (p) => ({ binding: await this.binding(p.id, p.param), weight: p.weight })));
    const key = `combo:${combinationKey(bindings)}`;
    const combine = async (): Promise<Resident> => {
      const started = performance.now();
      const binding = combineBindings(bindings, key);
      const { bytes, rank } = factorFootprint(binding.layers);
      const parts = canonical.map((p) => ({ id: p.id, weight: p.weight }));
      this.opts.onMerge?.({ key, parts, rank, bytes, seconds: (performance.now() - started) / 1000 });
      return { binding, bytes };
    };
    if (this.cache.has(key)) this.opts.onHit?.({ key, type: 'combination' });
    return (await this.cache.get(key, combine, canonical.map((p) => p.id))).binding;
  }

  stats(): RegistryStats {
    return { ...this.cache.stats(), registered: this.entries.size };
  }

  /** Drops every resident factor; entries stay known. Idempotent. */
  close(): void {
    this.cache.clear();
  }

  private isReserved(id: string): boolean {
    return this.opts.reserved?.includes(id) ?? false;
  }

  private discover(id: string): AdapterEntry | undefined {
    const dir = this.opts.adapterDir;
    if (!dir || !isAdapterId(id) || this.hidden.has(id) || this.isReserved(id)) return undefined;
    const path = join(dir, id);
    if (!existsSync(path) || !statSync(path).isDirectory()) return undefined;
    // Robustness patches share the directory but are not adapters (src/patches/, GET /admin/patches).
    if (isPatchDir(path)) return undefined;
    return { id, path, source: 'directory', created: unixSeconds() };
  }

  private async load(id: string, dir: string, param: string): Promise<LoadedAdapter> {
    const target = this.opts.target;
    if (!target) throw deltaDisabled(param);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const loaded = await loadAdapter(dir, target, id);
      this.opts.onLoad?.({ id, seconds: seconds(), kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes });
      return loaded;
    } catch (err) {
      this.opts.onLoad?.({ id, seconds: seconds(), error: err });
      throw forRequest(err, param, id, dir);
    }
  }
}
