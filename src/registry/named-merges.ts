/**
 * Named merges inside the registry: create (built at once, so a bad source or an unmet pin budget is refused
 * before anything registers), restore persisted recipes (built on first use), delete, and build a merge's
 * factors from its sources' current registrations — a source that is gone is a 409 naming it.
 */
import { notFound } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import { isAdapterId, type AdapterId } from './adapter-id.ts';
import { shown, type AdapterCatalog } from './adapter-catalog.ts';
import { mergeSourceMissing } from './errors.ts';
import { buildMerge } from './merge-build.ts';
import type { MergeRecipe } from './merge-recipe.ts';
import type { AdapterEntry, RegistryOptions } from './registry-types.ts';
import type { Resident, ResidentCache } from './resident-cache.ts';

export interface MergeContext {
  catalog: AdapterCatalog;
  cache: ResidentCache;
  opts: Pick<RegistryOptions, 'onMerge' | 'onHit'>;
  /** A source adapter's factors (loaded on demand, through the registry's cache). */
  adapterBinding(entry: AdapterEntry, param: string): Promise<DeltaBinding>;
  /** Refuses factors that cannot stay resident (pin budget, cache size). */
  checkFits(id: string, bytes: number, pinned: boolean, param?: string | null): void;
}

export class NamedMerges {
  /** Called with every recipe after a merge is created or deleted (persistence). */
  onChanged: ((recipes: MergeRecipe[]) => Promise<void>) | undefined;

  constructor(private readonly ctx: MergeContext) {}

  async create(recipe: MergeRecipe, param: string): Promise<AdapterEntry> {
    const { catalog } = this.ctx;
    const id = recipe.id as AdapterId;
    catalog.assertFree(id, param);
    catalog.registering.add(id);
    try {
      const entry: AdapterEntry = { id, path: '', source: 'merge', created: recipe.created, generation: catalog.nextGeneration(), pinned: recipe.pinned, recipe };
      const { built, sources } = await this.compile(entry, 'sources');
      this.ctx.checkFits(id, built.bytes, recipe.pinned);
      if (built.truncation) recipe.truncation = built.truncation;
      Object.assign(entry, { kind: 'merge', rank: built.rank, bytes: built.bytes });
      catalog.entries.set(id, entry);
      catalog.hidden.delete(id);
      try {
        await this.onChanged?.(this.recipes());
      } catch (err) {
        catalog.entries.delete(id);
        throw err;
      }
      // Stored only if its sources are still the ones it was built from (they may have changed meanwhile).
      if (sources.every((s) => catalog.isCurrent(s))) this.store(entry, { binding: built.binding, bytes: built.bytes });
      return { ...entry };
    } finally {
      catalog.registering.delete(id);
    }
  }

  /** Registers persisted recipes at start; nothing is built until a request names one. */
  restore(recipes: readonly MergeRecipe[]): { restored: string[]; skipped: string[] } {
    const { catalog } = this.ctx;
    const restored: string[] = [];
    const skipped: string[] = [];
    for (const recipe of recipes) {
      if (!isAdapterId(recipe.id) || catalog.lookup(recipe.id) || catalog.isReserved(recipe.id)) {
        skipped.push(recipe.id);
        continue;
      }
      const entry: AdapterEntry = {
        id: recipe.id, path: '', source: 'merge', created: recipe.created, generation: catalog.nextGeneration(),
        pinned: recipe.pinned, kind: 'merge', recipe,
      };
      catalog.entries.set(entry.id, entry);
      restored.push(recipe.id);
    }
    return { restored, skipped };
  }

  async delete(id: string, param: string): Promise<AdapterEntry> {
    const { catalog } = this.ctx;
    const entry = catalog.entries.get(id as AdapterId);
    if (!entry || entry.source !== 'merge') throw notFound(`merge '${id}' does not exist`, param, 'merge_not_found');
    catalog.entries.delete(entry.id);
    this.ctx.cache.invalidate(catalog.token(entry));
    await this.onChanged?.(this.recipes());
    return { ...entry };
  }

  recipes(): MergeRecipe[] {
    return [...this.ctx.catalog.entries.values()].flatMap((e) => (e.recipe ? [e.recipe] : []));
  }

  /** A merge's factors from the cache, built from its sources' current registrations on a miss. */
  async binding(entry: AdapterEntry, param: string): Promise<DeltaBinding> {
    const { catalog, cache } = this.ctx;
    const cacheKey = catalog.residentKey(entry);
    if (cache.has(cacheKey)) this.ctx.opts.onHit?.({ key: shown(cacheKey), type: 'combination' });
    let sources: AdapterEntry[] = [];
    const resident = await cache.get(
      cacheKey,
      async () => {
        const compiled = await this.compile(entry, param);
        sources = compiled.sources;
        return { binding: compiled.built.binding, bytes: compiled.built.bytes };
      },
      catalog.tokens(entry),
    );
    if (entry.pinned && catalog.isCurrent(entry) && sources.every((s) => catalog.isCurrent(s)) && !cache.isPinned(cacheKey) && cache.canPin(resident.bytes)) {
      cache.pin(cacheKey, resident, catalog.tokens(entry));
    }
    return resident.binding;
  }

  /** Loads a merge's sources (409 naming one that is no longer registered) and builds its factors. */
  private async compile(entry: AdapterEntry, param: string) {
    const recipe = entry.recipe!;
    const sources = recipe.sources.map((s) => {
      const src = this.ctx.catalog.lookup(s.id);
      if (!src || src.source === 'merge') throw mergeSourceMissing(entry.id, s.id, param);
      return src;
    });
    const bindings = await Promise.all(sources.map(async (src, i) => ({ binding: await this.ctx.adapterBinding(src, param), weight: recipe.sources[i]!.weight })));
    const started = performance.now();
    const built = await buildMerge(entry.id, bindings, recipe.rank);
    this.ctx.opts.onMerge?.({ key: `merge:${entry.id}`, parts: recipe.sources.map((s) => ({ id: s.id, weight: s.weight })), rank: built.rank, bytes: built.bytes, seconds: (performance.now() - started) / 1000 });
    return { built, sources };
  }

  private store(entry: AdapterEntry, resident: Resident): void {
    const key = this.ctx.catalog.residentKey(entry);
    if (entry.pinned) this.ctx.cache.pin(key, resident, this.ctx.catalog.tokens(entry));
    else this.ctx.cache.put(key, resident, this.ctx.catalog.tokens(entry));
  }
}
