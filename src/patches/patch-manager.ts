/**
 * Robustness patches: which are registered, which are applied globally with what α, and per-request use.
 *
 * Global: the active set {(id, α)} becomes one base version (runtime/versions/): for each affected weight
 * W = W_0 + Σ_active α·RWS (the sum in active order, float32 per term), published as the `patches` source.
 * Apply / scale / remove are serialized, idempotent (applying the same α again or removing an inactive
 * patch publishes nothing) and change the served state only once the new version is built.
 *
 * Per request: `patches: [{id, alpha}]` becomes a DeltaBinding on the delta path with *dense* factors,
 * exact (no low-rank approximation): for a layer with ΔW = Σ α·RWS [d_in, d_out],
 *
 *     d_in ≤ d_out:  A = I_{d_in} [d_in, d_in],  B = ΔW            ⇒ x·A·B = x·ΔW
 *     d_in > d_out:  A = ΔW,                     B = I_{d_out}
 *
 * i.e. rank min(d_in, d_out). It rides the same batch as every other row, adds to whatever base version
 * the request runs on, and combines with adapters by concatenating factors (adapters/combine.ts).
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { LRUCache } from 'lru-cache';
import { confineAdapterDir } from '../registry/path-confinement.ts';
import { badRequest, notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding, LayerFactors } from '../runtime/types.ts';
import { BaseVersionError, type BaseVersions, type SwapEvent } from '../runtime/versions/base-versions.ts';
import { dequantiseInto } from './rws-format.ts';
import { loadRwsPatch, type PatchTarget, type RwsPatch } from './rws-patch.ts';

export interface ActivePatch {
  id: string;
  alpha: number;
}

export interface PatchManagerOptions {
  versions: BaseVersions;
  target: PatchTarget;
  /** Layers with a delta branch (per-request patches can only use those). */
  deltaLayers: ReadonlySet<string>;
  /** Cached per-request bindings (dense factors are large: rank min(d_in, d_out) per layer). */
  maxCachedBindings?: number;
  /**
   * Directories admin-registered patch paths must lie in (PATCHBAY_ADAPTER_ROOTS, as for adapters and
   * generators; see registerAdmin). Undefined: no confinement (library use, the start-up scan).
   */
  adminRoots?: readonly string[];
}

export const SOURCE = 'patches';

export class PatchManager {
  private readonly patches = new Map<string, RwsPatch>();
  private active: ActivePatch[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private readonly bindings: LRUCache<string, DeltaBinding>;

  constructor(private readonly opts: PatchManagerOptions) {
    this.bindings = new LRUCache({ max: opts.maxCachedBindings ?? 8 });
  }

  list(): RwsPatch[] {
    return [...this.patches.values()];
  }

  get(id: string): RwsPatch | undefined {
    return this.patches.get(id);
  }

  activePatches(): ActivePatch[] {
    return this.active.map((a) => ({ ...a }));
  }

  /** Validates by loading; 409 if the id is taken. */
  async register(id: string, path: string): Promise<RwsPatch> {
    if (this.patches.has(id)) throw new PatchbayError({ status: 409, code: 'patch_exists', param: 'id', message: `patch '${id}' is already registered` });
    const patch = await loadRwsPatch(id, path, this.opts.target);
    if (this.patches.has(id)) throw new PatchbayError({ status: 409, code: 'patch_exists', param: 'id', message: `patch '${id}' is already registered` });
    this.patches.set(id, patch);
    return patch;
  }

  /**
   * Registration from the admin API: the path (a patch directory, or its patch.safetensors) must resolve
   * inside `adminRoots`, and nothing in that directory may link outside (400 adapter_path_not_allowed).
   * A path that does not exist is left to the loader, which names it.
   */
  async registerAdmin(id: string, path: string): Promise<RwsPatch> {
    const roots = this.opts.adminRoots;
    if (!roots) return this.register(id, path);
    const real = await realpath(resolve(path)).catch(() => undefined);
    if (!real) return this.register(id, path);
    const isDir = (await stat(real)).isDirectory();
    const confinement = { roots: roots.map((r) => resolve(r)), setting: 'PATCHBAY_ADAPTER_ROOTS', showPaths: true };
    const dir = await confineAdapterDir(isDir ? real : dirname(real), confinement, 'path', path);
    return this.register(id, isDir ? dir : join(dir, basename(real)));
  }

  /** Applies `id` globally with `alpha` (or re-scales it). Resolves once the new base version serves. */
  apply(id: string, alpha: number): Promise<SwapEvent | undefined> {
    return this.serialized(() => {
      this.require(id, 'id');
      if (!Number.isFinite(alpha)) throw badRequest('alpha must be a finite number', 'alpha');
      const current = this.active.find((a) => a.id === id);
      if (current?.alpha === alpha) return Promise.resolve(undefined);
      const next = current ? this.active.map((a) => (a.id === id ? { id, alpha } : a)) : [...this.active, { id, alpha }];
      return this.publish(next);
    });
  }

  /** Removes `id` from the global set; the weights it touched return to exactly what the rest give. */
  remove(id: string): Promise<SwapEvent | undefined> {
    return this.serialized(() => {
      this.require(id, 'id');
      if (!this.active.some((a) => a.id === id)) return Promise.resolve(undefined);
      return this.publish(this.active.filter((a) => a.id !== id));
    });
  }

  /** The request's `patches` as one delta binding (400/404 naming the entry on bad input). */
  binding(requested: readonly ActivePatch[]): DeltaBinding {
    requested.forEach((p, i) => {
      this.require(p.id, `patches[${i}].id`);
      if (!Number.isFinite(p.alpha)) throw badRequest('alpha must be a finite number', `patches[${i}].alpha`);
    });
    const key = `patches(${requested.map((p) => `${p.id}*${p.alpha}`).join('+')})`;
    const hit = this.bindings.get(key);
    if (hit) return hit;
    const layers = new Map<string, LayerFactors>();
    for (const [module, { dIn, dOut, delta }] of this.deltas(requested)) {
      if (!this.opts.deltaLayers.has(module)) {
        const i = requested.findIndex((p) => this.patches.get(p.id)!.layers.some((l) => l.module === module));
        throw badRequest(`${module} has no delta branch on this server (PATCHBAY_DELTA_TARGETS), so patch '${requested[i]!.id}' can only be applied globally`, `patches[${i}].id`, 'patch_not_attachable');
      }
      layers.set(module, denseFactors(dIn, dOut, delta));
    }
    const binding = { key, layers };
    this.bindings.set(key, binding);
    return binding;
  }

  private require(id: string, param: string): RwsPatch {
    const p = this.patches.get(id);
    if (!p) throw notFound(`patch '${id}' is not registered; see GET /admin/patches`, param, 'patch_not_found');
    return p;
  }

  /** ΔW per affected module: Σ α·dequantise(RWS), each term added into a float32 accumulator in order. */
  private deltas(set: readonly ActivePatch[]): Map<string, { initializer: string; dIn: number; dOut: number; delta: Float32Array }> {
    const out = new Map<string, { initializer: string; dIn: number; dOut: number; delta: Float32Array }>();
    for (const { id, alpha } of set) {
      for (const l of this.patches.get(id)!.layers) {
        let d = out.get(l.module);
        if (!d) out.set(l.module, (d = { initializer: l.initializer, dIn: l.dIn, dOut: l.dOut, delta: new Float32Array(l.dIn * l.dOut) }));
        dequantiseInto(d.delta, l.signature, alpha);
      }
    }
    return out;
  }

  private async publish(next: ActivePatch[]): Promise<SwapEvent> {
    const add = new Map([...this.deltas(next).values()].map((d) => [d.initializer, d.delta]));
    try {
      const swap = await this.opts.versions.publish(SOURCE, next.length > 0 ? { add } : undefined, next.map((a) => ({ ...a })));
      this.active = next;
      return swap;
    } catch (err) {
      if (err instanceof BaseVersionError) throw badRequest(`the patched weights were rejected: ${err.message}`, null, err.code);
      throw err;
    }
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Exact dense factors for ΔW [dIn, dOut] (row-major): an identity on the smaller side. */
export function denseFactors(dIn: number, dOut: number, delta: Float32Array): LayerFactors {
  if (dIn <= dOut) {
    const a = new Float32Array(dIn * dIn);
    for (let i = 0; i < dIn; i++) a[i * dIn + i] = 1;
    return { rank: dIn, a, b: delta };
  }
  const b = new Float32Array(dOut * dOut);
  for (let i = 0; i < dOut; i++) b[i * dOut + i] = 1;
  return { rank: dOut, a: delta, b };
}
