/**
 * Knowledge edits in a running server: one queue for edits and rollbacks, the durable store, and the
 * publication of the edited weights as base versions (src/runtime/versions/).
 *
 * An edit is: compute (keys, values) with the current weights → append to the log and fsync → apply the
 * RLS step → ack with its seq. Publication follows: the edited layers' float32 weights are published as the
 * `edits` source's replacement tensors with label `{editSeq}`; while one publish builds, later edits
 * coalesce into the next one. `submit` resolves only once a version containing its edits is current, so
 * from the ack on every new request sees them (`x-patchbay-edit-seq`); sequences already running finish on
 * the version they started on (BaseVersions leases).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeSafetensors } from '../adapters/safetensors.ts';
import type { BaseVersions, ModelInfo, TextTokenizer } from '../runtime/index.ts';
import type { Device } from '../runtime/session.ts';
import { checkEdit, type ComputedEdit, type PromptEdit } from './compute.ts';
import type { EditMeta } from './edit-log.ts';
import type { LayerEdit, LayerSpec } from './edit-state.ts';
import { EditStore } from './edit-store.ts';
import { EditError } from './errors.ts';
import { LocalSearch, type EditSearch, type Inspected } from './local-search.ts';
import { SearchHost } from './search-host.ts';
import { resolveDefaults, type EditSettings } from './settings.ts';

export const EDIT_STATS_FILE = 'edit_stats.safetensors';

export interface EditServiceOptions {
  model: ModelInfo;
  tokenizer: TextTokenizer;
  versions: BaseVersions;
  /** `PATCHBAY_DATA_DIR`; the log and snapshots go to `<dataDir>/edits/`. */
  dataDir: string;
  settings: EditSettings;
  device: Device;
  threads?: number;
  /**
   * Where a prompt edit's key probe and value search run (`PATCHBAY_EDIT_WORKER`): `on` = a worker thread
   * (search-host.ts; the serving thread keeps stepping meanwhile), `off` = this thread. Default `on`.
   */
  worker?: 'on' | 'off';
  /** The search worker thread's niceness (`PATCHBAY_EDIT_WORKER_NICE`, 0–19; search-wire.ts SearchInit). Default 0 here; the server's default is 10 (config.ts). */
  workerNice?: number;
}

export interface EditAck {
  seq: number;
  parts: { layer: string; u: number }[];
  search?: ComputedEdit['search'];
  positions?: number[];
  ms: { compute: number; durable: number };
}

export type EditEvent =
  | { kind: 'durable'; ack: EditAck }
  | { kind: 'visible'; editSeq: number; baseVersion: number; ms: number };

export class EditService {
  private queue: Promise<unknown> = Promise.resolve();
  /** Bumped by every commit or rollback; a publish makes visible the generation it captured. */
  private generation = 0;
  private published = 0;
  private publishing: Promise<void> | undefined;
  private readonly waiters: { gen: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private lastPublish: { editSeq: number; baseVersion: number; buildMs: number } | undefined;
  private publishes = 0;

  /**
   * The labels of the other sources (a global patch) the search's basis was built for; it is rebuilt (a new
   * probe session and upper stack) only when those change. Starts as the pristine model ([]).
   */
  private basisKey = '[]';

  private constructor(
    private readonly store: EditStore,
    /** Key probe + value search, on this thread or a worker (local-search.ts, search-host.ts). */
    readonly search: EditSearch,
    private readonly opts: EditServiceOptions,
    readonly layers: readonly string[],
    private readonly specs: readonly LayerSpec[],
  ) {}

  /** Loads statistics, replays the log, builds the key probe, publishes the replayed state if it has edits. */
  static async create(given: EditServiceOptions): Promise<EditService> {
    const { model, versions } = given;
    const statsPath = join(model.dir, EDIT_STATS_FILE);
    if (!existsSync(statsPath)) {
      throw new EditError('edits_unavailable', `no ${EDIT_STATS_FILE} in ${model.dir}: compute key statistics with tools/edits/edit_stats.py`);
    }
    const statsBytes = new Uint8Array(readFileSync(statsPath));
    const stats = decodeSafetensors(statsBytes, statsPath);
    // μ and the anchor subjects default to what the statistics record (settings.ts, resolveDefaults).
    const settings = resolveDefaults(given.settings, stats.header.metadata);
    const opts: EditServiceOptions = { ...given, settings };
    const covered = JSON.parse(stats.header.metadata['layers'] ?? '[]') as string[];
    const layerNames = settings.layers ?? covered;
    const specs: LayerSpec[] = layerNames.map((name) => {
      const lw = versions.linearWeight(name);
      if (!lw) throw new EditError('unknown_layer', `edit layer ${JSON.stringify(name)} is not a linear layer of ${model.id}`, 'layer');
      if (versions.consumers(lw.initializer) === 0) {
        // A 4-bit MatMulNBits weight (q4 import): base versions replace float32 initializers only, and writing W_t
        // back by re-quantizing would round the rank-u change onto the 4-bit grid (README, Knowledge edits on Llama).
        throw new EditError('unsupported_model', `edit layer ${name} has no float32 weight in ${model.id} (a quantized MatMulNBits layer); edit the f32 import instead`, 'layer');
      }
      if (!stats.header.tensors.has(`${name}.mom2`)) {
        throw new EditError('unknown_layer', `${statsPath} has no key statistics for ${name} (it covers ${covered.join(', ')})`, 'layer');
      }
      const mom2 = stats.tensor(`${name}.mom2`);
      if (mom2.dtype !== 'F32' || mom2.data.length !== lw.dIn * lw.dIn) {
        throw new EditError('shape_mismatch', `${name}.mom2 must be ${lw.dIn} × ${lw.dIn}`, 'layer');
      }
      return { name, initializer: lw.initializer, dK: lw.dIn, dV: lw.dOut, w0: versions.pristine(lw.initializer), mom2: mom2.data };
    });
    const searchOpts = { model, settings, device: opts.device, threads: opts.threads, layers: layerNames };
    const search: EditSearch =
      opts.worker === 'off'
        ? await LocalSearch.create({ ...searchOpts, tokenizer: opts.tokenizer, pristine: (name) => versions.pristine(name) })
        : await SearchHost.start({ ...searchOpts, nice: opts.workerNice });
    try {
      return await EditService.open(opts, settings.mu, search, specs, statsBytes);
    } catch (error) {
      await search.close();
      throw error;
    }
  }

  private static async open(opts: EditServiceOptions, mu: number, search: EditSearch, specs: LayerSpec[], statsBytes: Uint8Array): Promise<EditService> {
    const { settings } = opts;
    // The store's layers follow the probe's (graph) order, so every replay applies parts in the same order.
    const ordered = search.layers.map((p) => specs.find((s) => s.name === p.name)!);
    const fingerprint = createHash('sha256')
      .update(JSON.stringify({ layers: ordered.map((s) => s.name), lambda: settings.lambda, mu }))
      .update(statsBytes);
    for (const s of ordered) fingerprint.update(new Uint8Array(s.w0.buffer, s.w0.byteOffset, s.w0.byteLength));
    const store = await EditStore.open({
      dir: join(opts.dataDir, 'edits'),
      specs: ordered,
      lambda: settings.lambda,
      mu,
      fingerprint: fingerprint.digest('hex'),
      snapshotEvery: settings.snapshotEvery,
      keepSnapshots: settings.keepSnapshots,
    });
    const service = new EditService(store, search, opts, ordered.map((s) => s.name), ordered);
    if (store.seq > 0) {
      service.generation++;
      await service.publishNow();
    }
    return service;
  }

  get seq(): number {
    return this.store.seq;
  }

  get stateHash(): string {
    return this.store.current.hash();
  }

  /** Prompt edits, applied in order; resolves once all are durable and visible. */
  async submit(edits: readonly PromptEdit[], onEvent?: (e: EditEvent) => void): Promise<EditAck[]> {
    const acks = await this.commitPrompts(edits, onEvent);
    await this.visible(onEvent);
    return acks;
  }

  /** Prompt edits, applied in order; resolves once all are durable (then publishes in the background). */
  async commitPrompts(edits: readonly PromptEdit[], onEvent?: (e: EditEvent) => void): Promise<EditAck[]> {
    if (!this.search.promptEdits) {
      throw new EditError('unsupported_model', `prompt edits need the value search, implemented for GPT-2 and Llama only (this model is ${this.opts.model.architecture}); send raw {layer, keys, values}`);
    }
    for (const [i, e] of edits.entries()) {
      try {
        checkEdit(e, this.opts.tokenizer, this.opts.settings);
      } catch (err) {
        if (err instanceof EditError && edits.length > 1) throw new EditError(err.code, `edits[${i}]: ${err.message}`, `edits[${i}].${err.param ?? ''}`);
        throw err;
      }
    }
    const acks = await this.serial(async () => {
      const out: EditAck[] = [];
      for (const e of edits) {
        const t0 = performance.now();
        await this.onServedBasis();
        const computed = await this.search.compute(e, this.store.current);
        const t1 = performance.now();
        const meta: EditMeta = { source: 'prompt', prompt: e.prompt, target: e.target, ...(e.subject !== undefined ? { subject: e.subject } : {}) };
        const ack: EditAck = { ...this.commit(computed.parts, meta, t1 - t0, t1), search: computed.search, positions: computed.positions };
        out.push(ack);
        onEvent?.({ kind: 'durable', ack });
      }
      return out;
    });
    this.kickPublish();
    return acks;
  }

  /** Raw (keys, values) edits supplied by an operator; resolves once durable and visible. */
  async submitRaw(parts: LayerEdit[], onEvent?: (e: EditEvent) => void): Promise<EditAck> {
    const ack = await this.commitRaw(parts, onEvent);
    await this.visible(onEvent);
    return ack;
  }

  async commitRaw(parts: LayerEdit[], onEvent?: (e: EditEvent) => void): Promise<EditAck> {
    const ack = await this.serial(async () => {
      const a = this.commit(parts, { source: 'raw' }, 0, performance.now());
      onEvent?.({ kind: 'durable', ack: a });
      return a;
    });
    this.kickPublish();
    return ack;
  }

  async rollback(toSeq: number): Promise<{ seq: number }> {
    await this.serial(async () => {
      this.store.rollback(toSeq);
      this.generation++;
    });
    await this.visible();
    return { seq: this.store.seq };
  }

  status(): Record<string, unknown> {
    const s = this.store.stats();
    return {
      seq: s.seq,
      count: s.count,
      layers: this.store.current.layers.map((l) => ({ name: l.name, initializer: l.initializer, d_k: l.dK, d_v: l.dV })),
      settings: { lambda: this.opts.settings.lambda, mu: this.store.mu, anchor_subjects: this.opts.settings.anchorSubjects ?? [], value_search: this.opts.settings.valueSearch, prompt_edits: this.search.promptEdits, search_worker: this.opts.worker ?? 'on' },
      stats: {
        logged_edits: s.logged,
        rollbacks: s.rollbacks,
        next_seq: s.nextSeq,
        log_bytes: s.logBytes,
        snapshots: s.snapshots,
        replay_on_start: this.store.replayed,
        publishes: this.publishes,
        last_publish: this.lastPublish ?? null,
        state_sha256: this.stateHash,
      },
    };
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
    await this.publishing;
    this.store.close();
    await this.search.close();
  }

  /**
   * Keys and values must see what is served: every other source's contribution (BaseVersions.composedWithout)
   * under the edits. An additive change to an edited layer becomes the probe's offset on the fed W_t; changes
   * to any other weight are written into the probe's model bytes and read by the upper stack. V = kᵀW_t + δ/n
   * is unchanged: the recursion owns W_t, the patch's part of the served map stays the patch's.
   */
  private async onServedBasis(): Promise<void> {
    const { versions } = this.opts;
    const key = JSON.stringify(Object.entries(versions.current().labels).filter(([s]) => s !== 'edits'));
    if (this.basisKey === key) return;
    const edited = new Set(this.specs.map((s) => s.initializer));
    const offsets = new Map<string, Float32Array>();
    const baked = new Map<string, Float32Array>();
    for (const [name, w] of versions.composedWithout('edits')) {
      if (!edited.has(name)) baked.set(name, w);
      else {
        const w0 = versions.pristine(name);
        offsets.set(name, Float32Array.from(w, (x, i) => x - w0[i]!));
      }
    }
    this.basisKey = '';
    await this.search.rebase({ baked, offsets });
    this.basisKey = key;
  }

  /** Keys and ∂L/∂δ of a prompt edit on the weights as served now (tests compare them with a patched model). */
  async inspect(edit: PromptEdit): Promise<Inspected> {
    if (!this.search.promptEdits) throw new EditError('unsupported_model', 'prompt edits are not available for this model');
    return this.serial(async () => {
      await this.onServedBasis();
      return this.search.inspect(edit, this.store.current);
    });
  }

  private commit(parts: readonly LayerEdit[], meta: EditMeta, computeMs: number, t1: number): EditAck {
    const seq = this.store.commit(parts, meta);
    this.generation++;
    return { seq, parts: parts.map((p) => ({ layer: p.layer, u: p.u })), ms: { compute: computeMs, durable: performance.now() - t1 } };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Resolves once a version built from the state as of now (or later) is current. */
  visible(onEvent?: (e: EditEvent) => void): Promise<void> {
    const gen = this.generation;
    if (this.published >= gen) return Promise.resolve();
    const t0 = performance.now();
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ gen, resolve, reject }));
    this.kickPublish();
    return onEvent
      ? done.then(() => onEvent({ kind: 'visible', editSeq: this.lastPublish!.editSeq, baseVersion: this.lastPublish!.baseVersion, ms: performance.now() - t0 }))
      : done;
  }

  /** One publish at a time; edits that arrive meanwhile coalesce into the next. */
  private kickPublish(): void {
    if (this.publishing) return;
    this.publishing = (async () => {
      while (this.published < this.generation) {
        try {
          await this.publishNow();
        } catch (err) {
          for (const w of this.waiters.splice(0)) w.reject(err);
          break;
        }
      }
    })().finally(() => {
      this.publishing = undefined;
    });
  }

  private async publishNow(): Promise<void> {
    const gen = this.generation;
    const state = this.store.current;
    const editSeq = state.seq;
    // No edit in effect: withdraw, so the served weights are the pristine bytes (bit-exact rollback to 0).
    const swap = await this.opts.versions.publish('edits', state.history.length === 0 ? undefined : { replace: state.weights32() }, { editSeq });
    this.published = gen;
    this.publishes++;
    this.lastPublish = { editSeq, baseVersion: swap.to, buildMs: swap.buildMs };
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.gen <= gen) this.waiters.splice(i, 1)[0]!.resolve();
    }
  }
}
