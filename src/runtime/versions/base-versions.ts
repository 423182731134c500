/**
 * Base versions: the one mechanism for every global weight change (robustness patches, knowledge edits).
 *
 * Version 0 is the pristine model as loaded. A change source (`'patches'`, `'edits'`, …) publishes its
 * contribution — dense tensors for named ONNX initializers — and BaseVersions builds version n+1 off the
 * request path from the pristine weights plus every source's current contribution, then switches to it
 * atomically (one assignment between two scheduler steps):
 *
 *     W_v[t] = (replace_s[t] if some source s replaces t, else W_0[t]) + Σ_s add_s[t]     per initializer t
 *
 * recomputed from the pristine bytes on every publish, so withdrawing every contribution restores W_0
 * bit-exactly (restore, never subtract). Sequences hold a lease on the version they started on and finish
 * there; new sequences start on the current one. A retired version's sessions are released when its last
 * lease is returned. At most two versions are resident: a publish first waits until the previous retired
 * version has drained, so memory peaks at two copies of the sessions' weights (see README, "Base versions").
 * Publishes are serialized (one build at a time, in call order).
 *
 * Usage by a change source:
 *
 *     const w0 = versions.pristine(versions.linearWeight('transformer.h.0.mlp.c_proj').initializer);
 *     const swap = await versions.publish('edits', { replace: new Map([[name, w0PlusEdit]]) }, { editSeq: 12 });
 *     versions.current().labels.edits  // { editSeq: 12 }
 *     await versions.publish('edits', undefined)            // withdraw: those tensors are pristine again
 */
import type { Engine } from '../engine.ts';
import type { InitializerTable } from './initializer-table.ts';
import { BaseVersionError } from './base-versions-error.ts';
import { composeWeights, type ComposePart } from './compose.ts';

export { BaseVersionError };

/** One source's contribution. Tensors are float32 in the initializer's own layout and length. */
export interface WeightChanges {
  /** Full replacements computed by the source from the pristine weights (e.g. an edited W_t). */
  replace?: ReadonlyMap<string, Float32Array>;
  /** Dense deltas added after replacements (e.g. Σ α_c·RWS_c). */
  add?: ReadonlyMap<string, Float32Array>;
}

export interface BaseVersion {
  readonly id: number;
  readonly engine: Engine;
  /** Each contributing source's label as given to `publish` (e.g. `{patches: [{id, alpha}]}`). */
  readonly labels: Readonly<Record<string, unknown>>;
  /** Initializers that differ from the pristine model in this version. */
  readonly changed: readonly string[];
  /**
   * Their values (everything else is the pristine bytes). Kept for audits and tests (hashing the served
   * weights); costs one copy of the changed tensors per resident version.
   */
  readonly tensors: ReadonlyMap<string, Float32Array>;
}

/** A sequence's hold on a version; `release` is idempotent. */
export interface VersionLease {
  readonly version: BaseVersion;
  release(): void;
}

export interface SwapEvent {
  source: string;
  from: number;
  to: number;
  labels: Readonly<Record<string, unknown>>;
  changed: readonly string[];
  /** Waiting for the previous retired version to drain (the two-version bound). */
  drainWaitMs: number;
  /** Building the new version's weights and sessions. */
  buildMs: number;
  /** The switch itself. */
  switchMs: number;
  error?: unknown;
}

export interface BaseVersionsOptions {
  /** Version 0. */
  initial: Engine;
  /** The pristine model's float initializers (the weights `publish` may change). */
  table: InitializerTable;
  /** Linear layer (HF module path) → its weight initializer, graph orientation [dIn, dOut]. */
  linearWeights: ReadonlyMap<string, { initializer: string; dIn: number; dOut: number }>;
  /**
   * Runs composeWeights (compose.ts) for a publish — in a session worker, so the serving thread does not
   * scan and add millions of floats. Default: on this thread.
   */
  compose?: (parts: ComposePart[], names: readonly string[]) => Promise<Map<string, Float32Array>>;
  /** Builds an engine for version `id` whose initializers `tensors` replace the pristine ones. */
  build: (id: number, tensors: ReadonlyMap<string, Float32Array>) => Promise<Engine>;
  onSwap?: (event: SwapEvent) => void;
}

/**
 * The version's tensors as ordinary arrays: composition leaves them in shared memory (for the worker), which
 * ORT refuses as a feed, and callers use them as feeds (e.g. the edit probes). One memcpy per tensor.
 */
function unshared(tensors: ReadonlyMap<string, Float32Array>): Map<string, Float32Array> {
  return new Map([...tensors].map(([n, t]) => [n, t.buffer instanceof SharedArrayBuffer ? new Float32Array(t) : t]));
}

/** Contributions in order as composeWeights parts; only `checked`'s data is scanned for non-finite values. */
function toParts(contributions: ReadonlyMap<string, { changes: WeightChanges }>, checked: string | undefined): { parts: ComposePart[]; names: string[] } {
  const parts: ComposePart[] = [...contributions].map(([s, c]) => ({
    source: s,
    ...(c.changes.replace ? { replace: [...c.changes.replace] } : {}),
    ...(c.changes.add ? { add: [...c.changes.add] } : {}),
    check: s === checked,
  }));
  const names = [...new Set(parts.flatMap((p) => [...(p.replace ?? []), ...(p.add ?? [])].map(([n]) => n)))];
  return { parts, names };
}

interface Resident {
  version: BaseVersion;
  leases: number;
  drained?: () => void;
}

export class BaseVersions {
  private currentRes: Resident;
  private retired: Resident | undefined;
  private retiredDrained: Promise<void> | undefined;
  private readonly contributions = new Map<string, { changes: WeightChanges; label: unknown }>();
  private queue: Promise<unknown> = Promise.resolve();
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: BaseVersionsOptions) {
    this.currentRes = { version: { id: 0, engine: opts.initial, labels: {}, changed: [], tensors: new Map() }, leases: 0 };
  }

  current(): BaseVersion {
    return this.currentRes.version;
  }

  /** Versions holding sessions right now (1, or 2 while a retired one drains). */
  get resident(): number {
    return this.retired ? 2 : 1;
  }

  acquire(): VersionLease {
    const res = this.currentRes;
    res.leases++;
    let done = false;
    return {
      version: res.version,
      release: () => {
        if (done) return;
        done = true;
        res.leases--;
        if (res.leases === 0 && res === this.retired) this.dispose(res);
      },
    };
  }

  /** A copy of the pristine tensor. */
  pristine(initializer: string): Float32Array {
    return this.opts.table.read(initializer);
  }

  /** How many graph nodes read `initializer` (0 if it is not a changeable weight; 2 for tied weights). */
  consumers(initializer: string): number {
    return this.opts.table.get(initializer)?.consumers ?? 0;
  }

  /** Every initializer a publish may change. */
  initializerNames(): string[] {
    return this.opts.table.names();
  }

  linearWeight(layer: string): { initializer: string; dIn: number; dOut: number } | undefined {
    return this.opts.linearWeights.get(layer);
  }

  /**
   * The changed initializers of the current state with `source`'s contribution left out (composed exactly as a
   * publish does), e.g. the global patch under the knowledge edits, which compute their keys and values on it.
   */
  composedWithout(source: string): Map<string, Float32Array> {
    const others = new Map(this.contributions);
    others.delete(source);
    const { parts, names } = toParts(others, undefined);
    return unshared(composeWeights(this.opts.table.bytes, this.slots(names), parts));
  }

  /** What `source` contributes to the current state (its last published label), if anything. */
  label(source: string): unknown {
    return this.contributions.get(source)?.label;
  }

  /**
   * Sets (or, with `changes` undefined, withdraws) `source`'s contribution and switches to a version built
   * from all contributions. Rejects with BaseVersionError, leaving the current version and every
   * contribution as they were, if a tensor is unknown, has the wrong length or a non-finite value, or two
   * sources replace the same tensor.
   */
  publish(source: string, changes: WeightChanges | undefined, label?: unknown): Promise<SwapEvent> {
    const run = this.queue.then(() => this.swap(source, changes, label));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async swap(source: string, changes: WeightChanges | undefined, label: unknown): Promise<SwapEvent> {
    if (this.closed) throw new BaseVersionError('closed', 'the runtime is shutting down');
    const next = new Map(this.contributions);
    if (changes) {
      this.check(source, changes);
      next.set(source, { changes, label });
    } else next.delete(source);
    const { parts, names } = toParts(next, source);
    // Non-finite values are found here (BaseVersionError 'non_finite'), before anything changes.
    const tensors = names.length === 0 ? new Map<string, Float32Array>() : this.opts.compose ? await this.opts.compose(parts, names) : composeWeights(this.opts.table.bytes, this.slots(names), parts);

    const from = this.currentRes.version.id;
    const t0 = performance.now();
    if (this.retiredDrained) await this.retiredDrained;
    const t1 = performance.now();
    const id = this.nextId++;
    let engine: Engine;
    try {
      engine = await this.opts.build(id, tensors);
    } catch (error) {
      const ms = performance.now() - t1;
      this.opts.onSwap?.({ source, from, to: id, labels: {}, changed: [...tensors.keys()], drainWaitMs: t1 - t0, buildMs: ms, switchMs: 0, error });
      throw error;
    }
    const t2 = performance.now();
    const labels: Record<string, unknown> = {};
    for (const [s, c] of next) labels[s] = c.label;
    const version: BaseVersion = { id, engine, labels, changed: [...tensors.keys()].sort(), tensors: unshared(tensors) };
    // The switch: from here on `acquire` hands out the new version; leases on the old one stay valid.
    const old = this.currentRes;
    this.currentRes = { version, leases: 0 };
    this.contributions.clear();
    for (const [s, c] of next) this.contributions.set(s, c);
    this.retire(old);
    const event: SwapEvent = { source, from, to: id, labels, changed: version.changed, drainWaitMs: t1 - t0, buildMs: t2 - t1, switchMs: performance.now() - t2 };
    this.opts.onSwap?.(event);
    return event;
  }

  /** What can be told without reading the data: names, lengths, conflicting replacements. */
  private check(source: string, changes: WeightChanges): void {
    for (const [kind, map] of [['replace', changes.replace], ['add', changes.add]] as const) {
      for (const [name, data] of map ?? []) {
        const slot = this.opts.table.get(name);
        if (!slot) throw new BaseVersionError('unknown_initializer', `${source}: ${name} is not a float32 weight of the base model`);
        if (data.length !== slot.length) {
          throw new BaseVersionError('shape_mismatch', `${source}: ${name} has ${slot.length} elements [${slot.dims.join(', ')}], the ${kind} tensor ${data.length}`);
        }
        if (kind === 'replace') {
          for (const [other, c] of this.contributions) {
            if (other !== source && c.changes.replace?.has(name)) throw new BaseVersionError('conflict', `${source} and ${other} both replace ${name}`);
          }
        }
      }
    }
  }

  /** Offsets of `names` in the pristine bytes (for composeWeights). */
  slots(names: readonly string[]): Map<string, { offset: number; length: number }> {
    return new Map(names.map((n) => [n, this.opts.table.get(n)!] as const).map(([n, s]) => [n, { offset: s.offset, length: s.length }]));
  }

  private retire(old: Resident): void {
    if (old.leases === 0) {
      void old.version.engine.release();
      return;
    }
    this.retired = old;
    this.retiredDrained = new Promise<void>((resolve) => (old.drained = resolve));
  }

  private dispose(res: Resident): void {
    this.retired = undefined;
    this.retiredDrained = undefined;
    void res.version.engine.release();
    res.drained?.();
  }

  /** Waits for a publish in progress, then releases the current version's sessions. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.currentRes.version.engine.release();
    if (this.retired) await this.retired.version.engine.release();
  }
}
