/**
 * Sessions on copies of the delta graph that keep only the branches a batch uses (graph/keep-branches.ts).
 *
 * The delta graph carries a branch on every selected layer so that any adapter can be served at once; rows
 * without factors on a layer get rank 0 there, which is exact but not free: 3 ORT nodes per branch per step
 * (on SmolLM2-135M q4, 630 branch nodes ≈ 10 % of a batch-1 decode step for a LoRA that uses 32 of the 210
 * branches). Once a set of used layers has run for `buildAfterSteps` steps, a session on the graph with
 * just those branches is built, and later steps whose used layers it covers run on it instead, fed only its
 * layers' factor tensors (the very tensors of the full graph, so nothing is re-packed).
 *
 * Costs, hence bounded (`max`, PATCHBAY_BRANCH_SESSIONS): each such session holds its own copy of the
 * weights, and ORT builds a session synchronously (the event loop stalls for the build, once per layer set:
 * ~0.1 s for the tiny models, 1–5 s for SmolLM2 q4). A failed build is reported once and the full graph
 * keeps serving that set.
 *
 * `prepare` builds one ahead of any step, for layers known before their first request (the adapters a
 * server finds at start): that request then neither runs its first steps on the full graph nor waits for the
 * build in the middle of its tokens (measured with bench/lora-served.ts).
 */
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import type { DeltaLayer } from './delta-feeds.ts';

/** Layer sets whose steps are counted at once (each key is the set's layer names). */
const MAX_COUNTED_SETS = 256;

export interface BranchSessionsOptions {
  layers: readonly DeltaLayer[];
  /** Builds a session on the delta graph reduced to `keep` (branches of other layers removed). */
  build: (keep: ReadonlySet<string>) => Promise<InferenceSession>;
  /** At most this many reduced sessions per engine; 0 disables. */
  max: number;
  /** Steps a layer set runs on the full graph before its reduced session is built. */
  buildAfterSteps: number;
  onBuildError?: (error: unknown, keep: ReadonlySet<string>) => void;
}

interface Reduced {
  keep: ReadonlySet<string>;
  session: InferenceSession;
  /** Input names of its factor tensors. */
  inputs: readonly string[];
}

interface Usage {
  key: string;
  used: ReadonlySet<string>;
  /** Per reduced session, the feeds restricted to its inputs (built once per feeds object). */
  restricted: Map<Reduced, Record<string, Tensor>>;
}

export class BranchSessions {
  private readonly reduced: Reduced[] = [];
  private readonly usage = new WeakMap<Record<string, Tensor>, Usage>();
  private readonly steps = new Map<string, number>();
  private readonly failed = new Set<string>();
  private building: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: BranchSessionsOptions) {}

  /** Sessions built so far (for tests and metrics). */
  get size(): number {
    return this.reduced.length;
  }

  /**
   * The reduced session to run `feeds` on, with the feeds it takes, or undefined (run the full graph).
   * Counts the step towards building a reduced session for the feeds' layer set.
   */
  pick(feeds: Record<string, Tensor>): { session: InferenceSession; feeds: Record<string, Tensor> } | undefined {
    if (this.opts.max <= 0 || this.closed) return undefined;
    const usage = this.usageOf(feeds);
    let best: Reduced | undefined;
    for (const r of this.reduced) {
      if (r.keep.size < (best?.keep.size ?? Infinity) && [...usage.used].every((l) => r.keep.has(l))) best = r;
    }
    if (best) {
      let restricted = usage.restricted.get(best);
      if (!restricted) {
        restricted = {};
        for (const name of best.inputs) restricted[name] = feeds[name]!;
        usage.restricted.set(best, restricted);
      }
      return { session: best.session, feeds: restricted };
    }
    if (this.reduced.length >= this.opts.max || this.failed.has(usage.key)) return undefined;
    // Counts per layer set; forgotten wholesale if many distinct sets pass by without reaching the threshold.
    if (this.steps.size >= MAX_COUNTED_SETS && !this.steps.has(usage.key)) this.steps.clear();
    const n = (this.steps.get(usage.key) ?? 0) + 1;
    this.steps.set(usage.key, n);
    if (n >= this.opts.buildAfterSteps && !this.building) {
      this.building = this.buildFor(usage.used, usage.key, true).finally(() => (this.building = undefined));
    }
    return undefined;
  }

  /**
   * Builds a reduced session for `keep` now (after any build in flight), unless one already covers it or
   * the bound is reached. Resolves to whether some reduced session covers `keep` afterwards.
   */
  async prepare(keep: ReadonlySet<string>): Promise<boolean> {
    await this.settled();
    const covered = () => this.reduced.some((r) => [...keep].every((l) => r.keep.has(l)));
    if (this.opts.max <= 0 || this.closed || keep.size === 0) return false;
    if (covered()) return true;
    const used = new Set(this.opts.layers.filter((l) => keep.has(l.name)).map((l) => l.name));
    if (used.size !== keep.size) throw new Error(`prepare: ${[...keep].find((l) => !used.has(l))} is not a delta layer of this graph`);
    const key = [...used].join('\n');
    if (this.reduced.length >= this.opts.max || this.failed.has(key)) return false;
    this.building = this.buildFor(used, key, false).finally(() => (this.building = undefined));
    await this.building;
    return covered();
  }

  /** Resolves once no build is in flight (tests and benches wait on it instead of sleeping). */
  async settled(): Promise<void> {
    while (this.building) await this.building;
  }

  /** Waits for a build in flight, then frees every reduced session. Idempotent. */
  async release(): Promise<void> {
    this.closed = true;
    await this.building;
    const all = this.reduced.splice(0);
    for (const r of all) await r.session.release();
  }

  /** `afterStep`: a step asked for it; let that step finish first (ORT builds synchronously and would delay its tokens). */
  private async buildFor(used: ReadonlySet<string>, key: string, afterStep: boolean): Promise<void> {
    if (afterStep) await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      const session = await this.opts.build(used);
      if (this.closed) return void (await session.release());
      const inputs = this.opts.layers.filter((l) => used.has(l.name)).flatMap((l) => [l.aInput, l.bInput]);
      this.reduced.push({ keep: used, session, inputs });
    } catch (error) {
      this.failed.add(key);
      this.opts.onBuildError?.(error, used);
    }
  }

  /** Layers with rank > 0 in some row: those whose A tensor [rows, d_in, R] has R > 0. */
  private usageOf(feeds: Record<string, Tensor>): Usage {
    let u = this.usage.get(feeds);
    if (!u) {
      const used = this.opts.layers.filter((l) => (feeds[l.aInput]?.dims[2] ?? 0) > 0).map((l) => l.name);
      u = { key: used.join('\n'), used: new Set(used), restricted: new Map() };
      this.usage.set(feeds, u);
    }
    return u;
  }
}
