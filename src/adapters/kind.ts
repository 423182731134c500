/**
 * The one interface every adapter kind implements: detect its files, load them, compile to factors
 * for the delta path (`y += (x·A)·B` per targeted layer, see src/runtime/graph/delta-branches.ts).
 * Adding a kind = a file implementing `AdapterKind` + one line in ./index.ts.
 */
import type { DeltaBinding, LayerFactors } from '../runtime/types.ts';
import type { AdapterSource } from './adapter-files.ts';
import type { AttachTarget } from './attach-target.ts';

export interface LoadedAdapter {
  /** The adapter id (directory name unless given). */
  id: string;
  kind: string;
  /** key = id; one entry per targeted layer. */
  binding: DeltaBinding;
  /** Bytes held by the factors (for the registry's size-bounded cache). */
  bytes: number;
  /** Largest per-layer rank. */
  rank: number;
  /** Targeted graph layer names, in file order. */
  modules: string[];
}

export interface AdapterKind {
  readonly kind: string;
  /** Whether the directory's parsed adapter_config.json (undefined when absent) is of this kind. */
  detect(config: unknown): boolean;
  /** Validate against `target` (header-first: shapes before tensor bytes are decoded) and compile to factors. */
  load(src: AdapterSource, target: AttachTarget): Promise<LoadedAdapter>;
  /**
   * The same validation as `load` up to (not including) reading tensor bytes: config, base model name,
   * module names and shapes from the safetensors header. Throws what `load` would; cheap enough to run on
   * every adapter directory at startup, so only adapters that fit the served base are listed. Resolves to
   * the graph layers the adapter targets (what `load`'s binding will carry factors for).
   */
  check(src: AdapterSource, target: AttachTarget): Promise<string[]>;
}

/** Bytes held by a binding's factors (what the registry's LRU counts) and its largest per-layer rank. */
export function factorFootprint(layers: ReadonlyMap<string, LayerFactors>): { bytes: number; rank: number } {
  let bytes = 0;
  let rank = 0;
  for (const f of layers.values()) {
    bytes += f.a.byteLength + f.b.byteLength;
    rank = Math.max(rank, f.rank);
  }
  return { bytes, rank };
}

export function loadedAdapter(id: string, kind: string, layers: Map<string, LayerFactors>): LoadedAdapter {
  return { id, kind, binding: { key: id, layers }, ...factorFootprint(layers), modules: [...layers.keys()] };
}
