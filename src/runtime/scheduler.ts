import type { Tensor } from 'onnxruntime-node';
import { PatchbayError } from '../errors.ts';
import type { KvCache, RowRef } from './kv-layout.ts';
import { prefill } from './prefill.ts';
import { deltaTensors, type DeltaLayer } from './delta-feeds.ts';
import type { Engine } from './engine.ts';
import { validateGeneration } from './request-validation.ts';
import { Sequence } from './sequence.ts';
import type { TextTokenizer } from './tokenizer.ts';
import type { GenerationHandle, GenerationRequest } from './types.ts';

export interface Scheduler {
  submit(request: GenerationRequest): GenerationHandle;
  /**
   * n completions of one prompt (OpenAI's `n`): admitted together and prefilled once (prefill.ts). Member j
   * samples with seed + j when a seed is set. n is at most the batch size.
   */
  submitMany(request: GenerationRequest, n: number): GenerationHandle[];
  /** Stops admitting new requests; resolves once every queued and running sequence has finished. */
  drain(): Promise<void>;
  readonly activeCount: number;
  readonly queuedCount: number;
}

export interface StepEvent {
  kind: 'prefill' | 'decode';
  rows: number;
  tokens: number;
  ms: number;
  graph: 'plain' | 'delta' | 'delta-used' | 'wide';
}

/** Where sequences get the engine (base version) they run on; see versions/base-versions.ts. */
export interface EngineSource {
  acquire(): EngineLease;
}

/** A sequence's hold on the version it runs on (BaseVersions' VersionLease satisfies it). */
export interface EngineLease {
  readonly version: { readonly id: number; readonly engine: Engine; readonly labels?: Readonly<Record<string, unknown>> };
  release(): void;
}

export interface SchedulerOptions {
  maxBatch: number;
  maxQueue: number;
  contextLength: number;
  eosTokenIds: readonly number[];
  deltaLayers: readonly DeltaLayer[];
  /** Prompt token ids must lie in [0, vocabSize); checked at submit (request-validation.ts). */
  vocabSize?: number;
  onStep?: (event: StepEvent) => void;
}

/** The running sequences of one base version: one KV cache and one `session.run` per step. */
interface VersionBatch {
  engine: Engine;
  rows: Sequence[];
  kv: KvCache | undefined;
  /** Factor tensors of the batch; undefined while no row carries an adapter. */
  deltaFeeds: Record<string, Tensor> | undefined;
}

/**
 * Continuous batching: each iteration first prefills newly admitted sequences (one batched run on the
 * current base version), then runs one decode step for every live sequence. Sequences join and leave
 * between steps; a batch's cache is re-packed only then (kv-layout.ts), and so are its per-row delta factors.
 *
 * Rows on different base versions cannot share a `session.run` (different weights, different sessions), so
 * live sequences are kept in one batch per version: normally one, two for as long as sequences that started
 * before a switch are still running (BaseVersions keeps at most two resident). Each sequence holds a lease
 * on its version from admission until it leaves the batch.
 */
export class ContinuousBatchScheduler implements Scheduler {
  private waiting: Sequence[] = [];
  private batches = new Map<number, VersionBatch>();
  /** Sequences taken from `waiting` whose prefill is in flight: they hold batch slots already. */
  private prefilling = 0;
  private loop: Promise<void> | undefined;
  private draining = false;

  constructor(
    private readonly source: EngineSource,
    private readonly tokenizer: TextTokenizer,
    private readonly opts: SchedulerOptions,
  ) {}

  get activeCount(): number {
    let n = 0;
    for (const b of this.batches.values()) n += b.rows.length;
    return n;
  }

  get queuedCount(): number {
    return this.waiting.length;
  }

  submit(request: GenerationRequest): GenerationHandle {
    return this.submitMany(request, 1)[0]!;
  }

  submitMany(request: GenerationRequest, n: number): GenerationHandle[] {
    if (!Number.isInteger(n) || n < 1 || n > this.opts.maxBatch) {
      throw new PatchbayError({ status: 400, code: 'invalid_value', param: 'n', message: `n must be between 1 and ${this.opts.maxBatch} (the batch size) on this server.` });
    }
    if (this.draining) {
      throw new PatchbayError({ status: 503, code: 'shutting_down', message: 'the server is shutting down' });
    }
    this.validate(request);
    // A request that a free batch slot will take at the next step is not queued; only the rest count.
    const freeSlots = Math.max(0, this.opts.maxBatch - this.activeCount - this.prefilling);
    if (this.waiting.length + n - 1 >= this.opts.maxQueue + freeSlots) {
      throw new PatchbayError({
        status: 429,
        code: 'queue_full',
        message: `the request queue is full (${this.opts.maxQueue} waiting); retry later`,
      });
    }
    const group = n > 1 ? {} : undefined;
    const seqs = Array.from({ length: n }, (_, j) => {
      const seed = request.sampling.seed;
      const member = j === 0 || seed === undefined ? request : { ...request, sampling: { ...request.sampling, seed: seed + j } };
      return new Sequence(member, this.tokenizer, this.opts.eosTokenIds, group);
    });
    // An 'abort' listener never fires for a signal that is already aborted: finish them here, unqueued.
    if (request.signal?.aborted) {
      for (const seq of seqs) seq.finish('cancelled');
      return seqs;
    }
    for (const seq of seqs) {
      this.waiting.push(seq);
      request.signal?.addEventListener('abort', () => this.cancelWaiting(seq), { once: true });
    }
    this.kick();
    return seqs;
  }

  async drain(): Promise<void> {
    this.draining = true;
    while (this.loop) await this.loop;
  }

  private validate(request: GenerationRequest): void {
    const { promptIds, sampling } = request;
    validateGeneration(request, this.opts.vocabSize);
    if (promptIds.length === 0) {
      throw new PatchbayError({ status: 400, code: 'invalid_value', param: 'prompt', message: 'the prompt is empty' });
    }
    const context = this.opts.contextLength;
    if (promptIds.length + sampling.maxTokens > context) {
      throw new PatchbayError({
        status: 400,
        code: 'context_length_exceeded',
        param: 'max_tokens',
        message:
          `this model's context is ${context} tokens; the prompt has ${promptIds.length} and max_tokens asks ` +
          `for ${sampling.maxTokens} more (${promptIds.length + sampling.maxTokens}). Shorten the prompt or lower max_tokens.`,
      });
    }
  }

  private cancelWaiting(seq: Sequence): void {
    const i = this.waiting.indexOf(seq);
    if (i < 0) return; // already running: the loop drops it at the next step boundary
    this.waiting.splice(i, 1);
    seq.finish('cancelled');
  }

  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      if (this.waiting.length > 0) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0 || this.batches.size > 0) {
      await this.admit();
      for (const batch of [...this.batches.values()]) await this.guard(batch, () => this.decode(batch));
      // Let the HTTP side accept requests and flush streamed tokens between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** A failed run fails the sequences it carried and drops their batch, so the loop keeps serving. */
  private async guard(batch: VersionBatch, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (error) {
      for (const seq of batch.rows) seq.fail(error);
      this.setRows(batch, [], []);
    }
  }

  private async admit(): Promise<void> {
    const room = this.opts.maxBatch - this.activeCount;
    if (room <= 0 || this.waiting.length === 0) return;
    // A sequence cancelled while queued never reaches a prefill (its listener normally removed it already).
    const admitted = this.waiting.splice(0, admissible(this.waiting, room)).filter((seq) => {
      if (seq.signal?.aborted) seq.finish('cancelled');
      return !seq.finished;
    });
    if (admitted.length === 0) return;
    this.prefilling = admitted.length;
    const started = performance.now();
    // Every newcomer leases the current version; they all get the same one (no await in between).
    for (const seq of admitted) {
      seq.lease = this.source.acquire();
      seq.startedAt = started;
      seq.baseVersion = seq.lease.version.id;
      seq.baseLabels = seq.lease.version.labels ?? {};
    }
    try {
      await this.prefillGroup(admitted, started);
    } finally {
      this.prefilling = 0;
    }
  }

  /**
   * One batched prefill of `admitted` (all on one version). If it fails while carrying several requests,
   * each request (an `n` > 1 group counts as one) is retried alone, so one that cannot run (a bad binding,
   * say) fails by itself and the others join. Sequences that already sampled cannot be replayed: they fail.
   */
  private async prefillGroup(admitted: Sequence[], started: number): Promise<void> {
    const { id, engine } = admitted[0]!.lease!.version;
    try {
      const outcome = await prefill(engine, admitted, (rows) => this.factorsFor(rows));
      this.report('prefill', outcome.rows, outcome.tokens, started, outcome.result.graph);
      const batch = this.batches.get(id) ?? { engine, rows: [], kv: undefined, deltaFeeds: undefined };
      this.batches.set(id, batch);
      const keep: RowRef[] = batch.rows.map((_, row) => ({ from: batch.kv!, row }));
      const joined: Sequence[] = [];
      admitted.forEach((seq, i) => {
        if (seq.finished) return seq.leave();
        joined.push(seq);
        keep.push(outcome.refs[i]!);
      });
      this.setRows(batch, [...batch.rows, ...joined], keep);
    } catch (error) {
      // The running batches are untouched until setRows succeeds; only newcomers can fail here.
      const requests = new Map<object, Sequence[]>();
      for (const seq of admitted) {
        const key = seq.group ?? seq;
        requests.set(key, [...(requests.get(key) ?? []), seq]);
      }
      const retry = requests.size > 1 ? [...requests.values()].filter((g) => g.every((s) => !s.finished && s.firstTokenAt === undefined)) : [];
      for (const seq of admitted) {
        if (retry.some((g) => g.includes(seq))) continue;
        seq.fail(error);
        seq.leave();
      }
      for (const group of retry) await this.prefillGroup(group, started);
    }
  }

  private async decode(batch: VersionBatch): Promise<void> {
    this.dropFinished(batch);
    if (batch.rows.length === 0 || !batch.kv) return;
    const started = performance.now();
    let out: Awaited<ReturnType<Engine['forward']>>;
    try {
      out = await batch.engine.forward(batch.kv, batch.rows.map((s) => [s.lastToken]), batch.deltaFeeds);
    } catch (error) {
      if (batch.rows.length < 2) throw error;
      return this.decodeAlone(batch, error);
    }
    const { logits, kv, graph } = out;
    batch.kv = kv;
    this.report('decode', batch.rows.length, batch.rows.length, started, graph);
    batch.rows.forEach((seq, b) => seq.step(logits[b]!));
    this.dropFinished(batch);
  }

  /**
   * A batched decode step failed: which row caused it is unknown, so each row runs the step alone (from its
   * slice of the cache). Rows that fail alone fail; the rest continue in a re-packed batch. Costs one run
   * per row, only after a failure.
   */
  private async decodeAlone(batch: VersionBatch, error: unknown): Promise<void> {
    const kv = batch.kv!;
    const survivors: Sequence[] = [];
    const refs: RowRef[] = [];
    for (const [row, seq] of batch.rows.entries()) {
      try {
        const one = batch.engine.pack([{ from: kv, row }]);
        const started = performance.now();
        const { logits, kv: next, graph } = await batch.engine.forward(one, [[seq.lastToken]], this.factorsFor([seq]));
        this.report('decode', 1, 1, started, graph);
        seq.step(logits[0]!);
        if (!seq.finished) {
          survivors.push(seq);
          refs.push({ from: next, row: 0 });
        }
      } catch (own) {
        seq.fail(own ?? error);
      }
    }
    this.setRows(batch, survivors, refs);
  }

  /** Removes finished and cancelled rows; a cancelled row is finished here, at a step boundary. */
  private dropFinished(batch: VersionBatch): void {
    for (const seq of batch.rows) if (!seq.finished && seq.signal?.aborted) seq.finish('cancelled');
    if (!batch.rows.some((s) => s.finished)) return;
    const keep: RowRef[] = [];
    const live: Sequence[] = [];
    batch.rows.forEach((seq, row) => {
      if (seq.finished) return;
      live.push(seq);
      keep.push({ from: batch.kv!, row });
    });
    this.setRows(batch, live, keep);
  }

  /** Re-packs a batch to `live` (rows taken from `refs`); rows that left return their version lease. */
  private setRows(batch: VersionBatch, live: Sequence[], refs: RowRef[]): void {
    // Every source of `refs` (the old batch cache, a prefill's, a lone retry's) is dropped after this, so
    // a slot cache may be compacted in place (slot-kv.ts).
    const kv = live.length > 0 ? batch.engine.pack(refs, true) : undefined;
    const deltaFeeds = this.factorsFor(live);
    const stay = new Set(live);
    for (const seq of batch.rows) if (!stay.has(seq)) seq.leave();
    batch.rows = live;
    batch.kv = kv;
    batch.deltaFeeds = deltaFeeds;
    if (live.length === 0) {
      for (const [id, b] of this.batches) if (b === batch) this.batches.delete(id);
    }
  }

  private factorsFor(rows: readonly Sequence[]): Record<string, Tensor> | undefined {
    return rows.some((s) => s.delta) ? deltaTensors(this.opts.deltaLayers, rows.map((s) => s.delta)) : undefined;
  }

  private report(kind: StepEvent['kind'], rows: number, tokens: number, started: number, graph: StepEvent['graph']): void {
    this.opts.onStep?.({ kind, rows, tokens, ms: performance.now() - started, graph });
  }
}

/** How many waiting sequences to admit into `room` slots: whole `n` groups only, in arrival order. */
function admissible(waiting: readonly Sequence[], room: number): number {
  let take = 0;
  while (take < waiting.length) {
    const group = waiting[take]!.group;
    let end = take + 1;
    while (group && end < waiting.length && waiting[end]!.group === group) end++;
    if (end > room) break;
    take = end;
  }
  return take;
}
