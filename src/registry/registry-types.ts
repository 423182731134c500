/** The registry's public shapes: entries, hook events and options (see adapter-registry.ts). */
import type { AttachTarget, LoadedAdapter } from '../adapters/index.ts';
import type { AdapterId } from './adapter-id.ts';
import type { MergeRecipe } from './merge-recipe.ts';
import type { CacheStats } from './resident-cache.ts';

export interface AdapterEntry {
  id: AdapterId;
  /** The adapter directory ('' for merges). */
  path: string;
  /** `directory`: found under the adapter dir; `admin`: registered through the API; `merge`: a named merge. */
  source: 'directory' | 'admin' | 'merge';
  /** Unix seconds it became known. */
  created: number;
  /**
   * Unique per registration (a process-wide counter). Cache keys carry it, so a result computed for an
   * earlier registration of the same id is recognisably stale and never cached or served.
   */
  generation: number;
  /** Never evicted from host memory. */
  pinned: boolean;
  /** Known once loaded. */
  kind?: string;
  rank?: number;
  bytes?: number;
  /** Merges only. */
  recipe?: MergeRecipe;
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

/** One combination or named merge compiled into factors (a cache miss), for the `adapter.merge` span. */
export interface MergeEvent {
  /** The cache key (`combo:…` or `merge:…`). */
  key: string;
  /** Canonical parts: repeated ids summed, sorted by id (a named merge: its recipe's sources). */
  parts: readonly { id: string; weight: number }[];
  /** Largest per-layer rank of the result. */
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
  /** Directories admin-registered paths must lie in (default: the adapter dir). */
  adapterRoots?: readonly string[];
  /** Byte budget of resident factors (adapters, merges and cached combinations together). */
  maxBytes: number;
  /** How long a failed load is answered from memory (ms); default 10 s. */
  failureTtlMs?: number;
  /** Reads one adapter directory (default: adapters/index.ts loadAdapter); tests wrap it to order interleavings. */
  loader?: (dir: string, target: AttachTarget, id: string) => Promise<LoadedAdapter>;
  /** Milliseconds clock for the failure cache (default Date.now). */
  now?: () => number;
  /** What adapters must fit; undefined when the base graph has no delta branches (adapters refused). */
  target: AttachTarget | undefined;
  /** Ids that may never name an adapter (the base model's). */
  reserved?: readonly string[];
  /** Ids taken by something else that `model` can name (generators): registering one is a 409. */
  isTaken?: (id: string) => boolean;
  /** Sub-directories of the adapter dir that another registry owns (generator directories): never adapters. */
  isForeign?: (path: string) => boolean;
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
