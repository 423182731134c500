/**
 * A prompt edit's key probe and value search on a worker thread (search-worker.ts runs a LocalSearch there),
 * behind the same EditSearch seam as the in-thread LocalSearch. `PATCHBAY_EDIT_WORKER=on` (default).
 *
 * Why: both are synchronous on the calling thread — onnxruntime-node runs the probe session there, and the
 * Adam search is float64 JS (≈ 50 s per edit on SmolLM2). On the serving thread every decode step and HTTP
 * request waited for them (README, BENCHMARKS "Knowledge edits"). Here the serving thread only copies W_t
 * out (one memcpy per edited layer) and takes the keys and values back (moved, not copied); logging, the
 * RLS step and publishing stay where they were.
 *
 * Failure: if the worker dies (crash, out of memory, terminated) while an edit is computed, that edit fails
 * with EditError('search_failed') before anything was logged, so nothing changes; a replacement worker
 * starts at once (module loading, tokenizer, probe session and the current basis), and the next edit
 * waits for it.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../runtime/session-host.ts';
import type { ComputedEdit, PromptEdit } from './compute.ts';
import type { EditState } from './edit-state.ts';
import { EditError } from './errors.ts';
import type { EditSearch, Inspected, SearchBasis } from './local-search.ts';
import type { ProbeLayer } from './probe.ts';
import { searchErrorFromWire, type SearchInit, type SearchReply, type SearchRequest, type WireLayerState } from './search-wire.ts';

type Ok = Extract<SearchReply, { ok: true }>;
type Pending = { resolve: (r: Ok) => void; reject: (e: Error) => void; settled: Promise<unknown> };
type Body = SearchRequest extends infer R ? (R extends SearchRequest ? Omit<R, 'id'> : never) : never;

export class SearchHost implements EditSearch {
  private worker: Worker | undefined;
  /** The current worker's init (+ rebase); every request waits for it. */
  private booting: Promise<Ok> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  /** The last basis sent, replayed into a replacement worker. */
  private basis: { baked: [string, Float32Array][]; offsets: [string, Float32Array][] } = { baked: [], offsets: [] };
  private started = 0;
  /** The request whose value search runs now (its probe runs are done). */
  private searchingId = 0;

  private constructor(
    private readonly init: SearchInit,
    readonly layers: readonly ProbeLayer[],
    readonly promptEdits: boolean,
  ) {}

  /** Starts the worker and builds its search; rejects (with the worker's EditError, e.g. unknown_layer) if it cannot. */
  static async start(init: SearchInit): Promise<SearchHost> {
    const host = new SearchHost(init, [], false);
    try {
      const r = await host.boot();
      return Object.assign(host, { layers: r.layers!, promptEdits: r.promptEdits! }) as SearchHost;
    } catch (error) {
      await host.close();
      throw error;
    }
  }

  async rebase(basis: SearchBasis): Promise<void> {
    // Copies (structured clone), kept for a replacement worker; the caller keeps its own.
    this.basis = { baked: [...basis.baked], offsets: [...basis.offsets] };
    await this.call({ op: 'rebase', ...this.basis });
  }

  async compute(edit: PromptEdit, state: EditState): Promise<ComputedEdit> {
    const { layers, transfer } = wireState(state);
    return (await this.call({ op: 'compute', edit, layers }, transfer)).computed!;
  }

  async inspect(edit: PromptEdit, state: EditState): Promise<Inspected> {
    const { layers, transfer } = wireState(state);
    const r = (await this.call({ op: 'inspect', edit, layers }, transfer)).inspected!;
    return { keys: new Map(r.keys), grad: r.grad, u: r.u };
  }

  /** Workers started so far (1 + replacements after failures). */
  get starts(): number {
    return this.started;
  }

  /** True while an edit's value search runs in the worker (its probe runs done; only JS on that thread). */
  get searching(): boolean {
    return this.pending.has(this.searchingId);
  }

  /**
   * Ends the worker as a crash would: requests in flight fail with search_failed, a replacement starts.
   * Only while no ORT call runs in it (e.g. while `searching`): onnxruntime-node raises a C++ exception when
   * its thread's isolate is torn down under a running session call, and that aborts the whole process.
   */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Waits for the requests in flight (see terminate: never tear the worker down under an ORT call), then ends it. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pending.values()].map((p) => p.settled));
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private boot(): Promise<Ok> {
    this.started++;
    const worker = startModuleWorker(import.meta.url, 'search-worker');
    this.worker = worker;
    let ready = false;
    worker.on('message', (reply: SearchReply) => {
      if ('progress' in reply) {
        this.searchingId = reply.id;
        return;
      }
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.ok) p.resolve(reply);
      else p.reject(searchErrorFromWire(reply.error));
    });
    const fail = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.booting = undefined;
      const error = new EditError('search_failed', `the edit search worker failed (${why}); the edit was not applied and nothing changed; a new worker is starting, retry the edit`);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
      // The replacement starts now rather than with the next edit (its probe session takes seconds on
      // SmolLM2). Not for a worker that failed while starting: the next edit tries again, no restart loop.
      if (ready && !this.closed) void this.boot().catch(() => undefined);
    };
    worker.on('error', (e) => fail(e.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
    worker.unref();
    // The worker handles requests in order, so these two need not wait for each other.
    const init = this.post(worker, { op: 'init', init: this.init });
    const rebased = this.basis.baked.length + this.basis.offsets.length > 0 ? this.post(worker, { op: 'rebase', ...this.basis }) : init;
    const booted = Promise.all([init, rebased]).then(([r]) => {
      ready = true;
      return r;
    });
    this.booting = booted;
    return booted;
  }

  private async call(body: Body, transfer: ArrayBuffer[] = []): Promise<Ok> {
    if (this.closed) throw new EditError('search_failed', 'the edit search is closed');
    const booting = this.booting ?? this.boot();
    const worker = this.worker!;
    try {
      await booting;
    } catch (error) {
      // A worker that could not build its search is of no use: drop it; the next request starts another.
      if (this.worker === worker) {
        this.worker = undefined;
        this.booting = undefined;
        await worker.terminate();
      }
      throw error;
    }
    // The worker may have died since it booted: a replacement is then starting, and takes this request after
    // its init (if that fails, so does this request, with the reason).
    if (!this.worker) void this.boot().catch(() => undefined);
    return this.post(this.worker!, body, transfer);
  }

  private post(worker: Worker, body: Body, transfer: ArrayBuffer[] = []): Promise<Ok> {
    const id = this.nextId++;
    let settle!: Pick<Pending, 'resolve' | 'reject'>;
    const reply = new Promise<Ok>((resolve, reject) => (settle = { resolve, reject }));
    this.pending.set(id, { ...settle, settled: reply.catch(() => undefined) });
    worker.ref();
    worker.postMessage({ ...body, id } as SearchRequest, transfer);
    return reply;
  }
}

/** W_t of every edited layer, copied so the copies can be moved to the worker (the store keeps its own). */
function wireState(state: EditState): { layers: WireLayerState[]; transfer: ArrayBuffer[] } {
  const layers = state.layers.map((l) => ({ name: l.name, initializer: l.initializer, dK: l.dK, dV: l.dV, w: l.w.slice() }));
  return { layers, transfer: layers.map((l) => l.w.buffer as ArrayBuffer) };
}
