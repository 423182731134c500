/**
 * Knows every generator by id (directories with a generator.json under the adapter dir, or registered through
 * the admin API), keeps loaded generators (their ORT sessions) and caches the factors they generate in the
 * adapter registry's byte-bounded cache — the same budget as adapters — under
 * `gen:<id>#<registration>:<condition hash>`. A failed load or registration changes nothing; unregistering
 * drops the generator's session and every factor it generated.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GENERATOR_MISFIT_CODES, generatorKind, type GeneratorContext, type LoadedGenerator } from '../adapters/generator.ts';
import { conditionHash } from '../adapters/generator-condition.ts';
import { readGeneratorManifest, type GeneratorManifest } from '../adapters/generator-manifest.ts';
import type { AttachTarget } from '../adapters/index.ts';
import { badRequest, notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import { isAdapterId, type AdapterId } from './adapter-id.ts';
import type { LoadEvent } from './adapter-registry.ts';
import { deltaDisabled, forRequest } from './errors.ts';
import { confineAdapterDir } from './path-confinement.ts';
import type { ResidentCache } from './resident-cache.ts';

export interface GeneratorEntry {
  id: AdapterId;
  path: string;
  source: 'directory' | 'admin';
  created: number;
  /** Read at scan/registration; undefined when the manifest is unreadable (a request then gets the 400). */
  manifest?: GeneratorManifest;
}

/** One lookup of generated factors: a generator run (miss) or a cache hit. */
export interface GenerateEvent {
  id: string;
  hash: string;
  hit: boolean;
  seconds: number;
  rank?: number;
  bytes?: number;
  error?: unknown;
}

export interface GeneratedFactors {
  binding: DeltaBinding;
  hash: string;
  hit: boolean;
}

export interface GeneratorRegistryOptions {
  adapterDir?: string;
  /** Directories admin-registered generator paths must lie in (PATCHBAY_ADAPTER_ROOTS; default: the adapter dir). */
  adapterRoots?: readonly string[];
  /** What generated factors must fit; undefined when the graph has no delta branches (generators refused). */
  target: AttachTarget | undefined;
  /** Shared with the adapter registry: generated factors count against the same byte budget. */
  cache: ResidentCache;
  context: GeneratorContext;
  /** Ids generators may not take (the base's). */
  reserved?: readonly string[];
  /** Ids already taken elsewhere (adapters): registering one is a 409. */
  isTaken?: (id: string) => boolean;
  onLoad?: (event: LoadEvent) => void;
  onGenerate?: (event: GenerateEvent) => void;
}

const unixSeconds = () => Math.floor(Date.now() / 1000);

export class GeneratorRegistry {
  private readonly entries = new Map<AdapterId, GeneratorEntry & { serial: number }>();
  private readonly loaded = new Map<string, Promise<LoadedGenerator>>();
  private readonly registering = new Set<string>();
  /** Generator directories made for another base: id → why. Not listed; asking for one answers why. */
  private readonly unfit = new Map<string, string>();
  private serial = 0;

  constructor(private readonly opts: GeneratorRegistryOptions) {}

  get enabled(): boolean {
    return this.opts.target !== undefined;
  }

  /**
   * Records every generator directory under the adapter dir that fits the served base (manifest, base identity
   * and targets checked; the ONNX file is not opened). One with an unreadable manifest stays listed and fails
   * where it is used.
   */
  async scan(): Promise<GeneratorEntry[]> {
    const dir = this.opts.adapterDir;
    if (dir && existsSync(dir)) {
      for (const name of (await readdir(dir)).sort()) {
        const path = join(dir, name);
        if (!isAdapterId(name) || this.entries.has(name) || this.opts.reserved?.includes(name)) continue;
        if (!statSync(path).isDirectory() || !(await generatorKind.detect(path))) continue;
        const target = this.opts.target;
        const misfit = target
          ? await generatorKind.check(path, target, name).then(
              () => undefined,
              (err: unknown) => (err instanceof PatchbayError && GENERATOR_MISFIT_CODES.has(err.code) ? err.message : undefined),
            )
          : undefined;
        if (misfit !== undefined) {
          this.unfit.set(name, misfit);
          continue;
        }
        const manifest = await readGeneratorManifest(path, name).catch(() => undefined);
        this.entries.set(name, { id: name, path, source: 'directory', created: unixSeconds(), serial: ++this.serial, ...(manifest ? { manifest } : {}) });
      }
    }
    return this.list();
  }

  /** Why a generator directory was left out at scan (made for another base), if it was. */
  unfitReason(id: string): string | undefined {
    return this.entries.has(id as AdapterId) ? undefined : this.unfit.get(id);
  }

  unfitGenerators(): { id: string; reason: string }[] {
    return [...this.unfit].map(([id, reason]) => ({ id, reason }));
  }

  list(): GeneratorEntry[] {
    return [...this.entries.values()].map(publicEntry);
  }

  get(id: string): GeneratorEntry | undefined {
    const e = this.entries.get(id as AdapterId);
    return e && publicEntry(e);
  }

  has(id: string): boolean {
    return this.entries.has(id as AdapterId);
  }

  isLoaded(id: string): boolean {
    const e = this.entries.get(id as AdapterId);
    return e !== undefined && this.loaded.has(sessionKey(e));
  }

  /** Validates by loading (manifest, base, shapes, a trial run); only then is the id visible. 409 if taken. */
  async register(id: AdapterId, path: string): Promise<GeneratorEntry> {
    if (!this.enabled) throw deltaDisabled();
    if (this.has(id) || this.registering.has(id) || this.opts.reserved?.includes(id) || this.opts.isTaken?.(id)) {
      throw new PatchbayError({ status: 409, code: 'generator_exists', param: 'id', message: `'${id}' is already registered (as a generator, an adapter or the base); unregister it first` });
    }
    const roots = this.opts.adapterRoots ?? (this.opts.adapterDir ? [this.opts.adapterDir] : []);
    const dir = await confineAdapterDir(resolve(path), { roots: roots.map((r) => resolve(r)), setting: 'PATCHBAY_ADAPTER_ROOTS', showPaths: true }, 'path', path);
    if (!(await generatorKind.detect(dir))) throw badRequest(`${path} has no generator.json: not a generator directory`, 'path', 'invalid_generator');
    this.registering.add(id);
    try {
      const entry = { id, path: dir, source: 'admin' as const, created: unixSeconds(), serial: ++this.serial };
      const generator = await this.load(entry, 'path');
      this.entries.set(id, { ...entry, manifest: generator.manifest });
      this.loaded.set(sessionKey(entry), Promise.resolve(generator));
      return publicEntry(this.entries.get(id)!);
    } finally {
      this.registering.delete(id);
    }
  }

  /** Forgets the id, its session and every factor it generated. */
  async unregister(id: string): Promise<GeneratorEntry> {
    const entry = this.entries.get(id as AdapterId);
    if (!entry) throw notFound(`generator '${id}' is not registered`, 'id', 'generator_not_found');
    this.entries.delete(entry.id);
    this.opts.cache.invalidate(sessionKey(entry));
    await this.release(entry);
    return publicEntry(entry);
  }

  /**
   * Factors for `condition` on generator `id`: from the cache, or one generator run (single-flight per key).
   * 404 for an unknown id; 400 for a condition that does not fit or a generator output with NaN/Inf.
   */
  async factors(id: string, condition: readonly unknown[] | string, param = 'model'): Promise<GeneratedFactors> {
    const entry = this.entries.get(id as AdapterId);
    if (!entry) throw notFound(`generator '${id}' does not exist; see GET /v1/models`, param, 'generator_not_found');
    if (!this.enabled) throw deltaDisabled(param);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    const generator = await this.generator(entry, param);
    let hash = '';
    try {
      const c = await generator.condition(condition);
      hash = conditionHash(c);
      const key = `${sessionKey(entry)}:${hash}`;
      const hit = this.opts.cache.has(key);
      const resident = await this.opts.cache.get(
        key,
        async () => {
          const loaded = await generator.generate(c, key);
          return { binding: loaded.binding, bytes: loaded.bytes };
        },
        [sessionKey(entry)],
      );
      this.opts.onGenerate?.({ id, hash, hit, seconds: seconds(), rank: generator.manifest.rank, bytes: resident.bytes });
      return { binding: resident.binding, hash, hit };
    } catch (err) {
      this.opts.onGenerate?.({ id, hash, hit: false, seconds: seconds(), error: err });
      throw err;
    }
  }

  /** Releases every loaded session; entries stay known. Idempotent. */
  async close(): Promise<void> {
    const all = [...this.loaded.values()];
    this.loaded.clear();
    await Promise.all(all.map((p) => p.then((g) => g.close(), () => undefined)));
  }

  private generator(entry: GeneratorEntry & { serial: number }, param: string): Promise<LoadedGenerator> {
    const key = sessionKey(entry);
    let pending = this.loaded.get(key);
    if (!pending) {
      pending = this.load(entry, param);
      this.loaded.set(key, pending);
      // A failed load is not kept: the next request retries (and gets the same 400 if nothing changed).
      pending.catch(() => this.loaded.get(key) === pending && this.loaded.delete(key));
    }
    return pending;
  }

  private async load(entry: GeneratorEntry, param: string): Promise<LoadedGenerator> {
    const target = this.opts.target;
    if (!target) throw deltaDisabled(param);
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    try {
      const g = await generatorKind.load(entry.path, target, entry.id, this.opts.context);
      this.opts.onLoad?.({ id: entry.id, seconds: seconds(), kind: 'generator', rank: g.manifest.rank });
      return g;
    } catch (err) {
      this.opts.onLoad?.({ id: entry.id, seconds: seconds(), error: err });
      throw forRequest(err, param, entry.id, entry.path);
    }
  }

  private async release(entry: GeneratorEntry & { serial: number }): Promise<void> {
    const pending = this.loaded.get(sessionKey(entry));
    this.loaded.delete(sessionKey(entry));
    // close() lets runs already started finish first (generator.ts).
    await pending?.then((g) => g.close(), () => undefined);
  }
}

/** Identity of one registration: a re-registered id never sees the previous one's sessions or factors. */
const sessionKey = (e: { id: string; serial: number }) => `gen:${e.id}#${e.serial}`;

function publicEntry(e: GeneratorEntry & { serial?: number }): GeneratorEntry {
  const { serial: _serial, ...rest } = e;
  return { ...rest };
}
