import type { Tensor } from 'onnxruntime-node';
import { PatchbayError } from '../errors.ts';
import { BatchKv, pack, type RowRef } from './batch-kv.ts';
import { deltaTensors, type DeltaLayer } from './delta-feeds.ts';
import type { Engine } from './engine.ts';
import { Sequence } from './sequence.ts';
import type { TextTokenizer } from './tokenizer.ts';
import type { GenerationHandle, GenerationRequest } from './types.ts';

export interface Scheduler {
  submit(request: GenerationRequest): GenerationHandle;
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
  graph: 'plain' | 'delta';
}

export interface SchedulerOptions {
  maxBatch: number;
  maxQueue: number;
  contextLength: number;
  eosTokenIds: readonly number[];
  deltaLayers: readonly DeltaLayer[];
  onStep?: (event: StepEvent) => void;
}

/**
 * Continuous batching: each iteration first prefills newly admitted sequences (one batched run), then
 * runs one decode step for every live sequence together. Sequences join and leave between steps; the
 * batch cache is re-packed only then (batch-kv.ts), and so are the per-row delta factors.
 */
export class ContinuousBatchScheduler implements Scheduler {
  private waiting: Sequence[] = [];
  private running: Sequence[] = [];
  /** Sequences taken from `waiting` whose prefill is in flight: they hold batch slots already. */
  private prefilling = 0;
  private kv: BatchKv | undefined;
  /** Factor tensors of the running batch; undefined while no running row carries an adapter. */
  private deltaFeeds: Record<string, Tensor> | undefined;
  private loop: Promise<void> | undefined;
  private draining = false;

  constructor(
    private readonly engine: () => Engine,
    private readonly tokenizer: TextTokenizer,
    private readonly opts: SchedulerOptions,
  ) {}

  get activeCount(): number {
    return this.running.length;
  }

  get queuedCount(): number {
    return this.waiting.length;
  }

  submit(request: GenerationRequest): GenerationHandle {
    if (this.draining) {
      throw new PatchbayError({ status: 503, code: 'shutting_down', message: 'the server is shutting down' });
    }
    this.validate(request);
    // A request that a free batch slot will take at the next step is not queued; only the rest count.
    const freeSlots = Math.max(0, this.opts.maxBatch - this.running.length - this.prefilling);
    if (this.waiting.length >= this.opts.maxQueue + freeSlots) {
      throw new PatchbayError({
        status: 429,
        code: 'queue_full',
        message: `the request queue is full (${this.opts.maxQueue} waiting); retry later`,
      });
    }
    const seq = new Sequence(request, this.tokenizer, this.opts.eosTokenIds);
    this.waiting.push(seq);
    request.signal?.addEventListener('abort', () => this.cancelWaiting(seq), { once: true });
    this.kick();
    return seq;
  }

  async drain(): Promise<void> {
    this.draining = true;
    while (this.loop) await this.loop;
  }

  private validate({ promptIds, sampling }: GenerationRequest): void {
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
    while (this.waiting.length > 0 || this.running.length > 0) {
      const engine = this.engine();
      await this.guard(() => this.admit(engine));
      await this.guard(() => this.decode(engine));
      // Let the HTTP side accept requests and flush streamed tokens between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** A failed run fails the sequences it carried and resets the batch, so the loop keeps serving. */
  private async guard(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (error) {
      for (const seq of this.running) seq.fail(error);
      this.running = [];
      this.kv = undefined;
    }
  }

  private async admit(engine: Engine): Promise<void> {
    const room = this.opts.maxBatch - this.running.length;
    if (room <= 0 || this.waiting.length === 0) return;
    const admitted = this.waiting.splice(0, room);
    this.prefilling = admitted.length;
    const started = performance.now();
    for (const seq of admitted) {
      seq.startedAt = started;
      seq.baseVersion = engine.baseVersion;
    }
    try {
      const feeds = this.factorsFor(admitted);
      const result = await engine.forward(BatchKv.empty(engine.shape, admitted.length), admitted.map((s) => s.promptIds), feeds);
      this.report('prefill', admitted.length, admitted.reduce((n, s) => n + s.promptIds.length, 0), started, result.graph);
      admitted.forEach((seq, b) => seq.step(result.logits[b]!));
      const keep: RowRef[] = this.running.map((_, row) => ({ from: this.kv!, row }));
      admitted.forEach((seq, row) => {
        if (!seq.finished) keep.push({ from: result.kv, row });
      });
      this.rebatch([...this.running, ...admitted.filter((s) => !s.finished)], keep);
    } catch (error) {
      // The running batch is untouched until rebatch succeeds; only the newcomers fail.
      for (const seq of admitted) seq.fail(error);
    } finally {
      this.prefilling = 0;
    }
  }

  private async decode(engine: Engine): Promise<void> {
    this.dropFinished();
    if (this.running.length === 0 || !this.kv) return;
    const started = performance.now();
    const { logits, kv, graph } = await engine.forward(this.kv, this.running.map((s) => [s.lastToken]), this.deltaFeeds);
    this.kv = kv;
    this.report('decode', this.running.length, this.running.length, started, graph);
    this.running.forEach((seq, b) => seq.step(logits[b]!));
    this.dropFinished();
  }

  /** Removes finished and cancelled rows; a cancelled row is finished here, at a step boundary. */
  private dropFinished(): void {
    for (const seq of this.running) if (!seq.finished && seq.signal?.aborted) seq.finish('cancelled');
    if (!this.running.some((s) => s.finished)) return;
    const keep: RowRef[] = [];
    const live: Sequence[] = [];
    this.running.forEach((seq, row) => {
      if (seq.finished) return;
      live.push(seq);
      keep.push({ from: this.kv!, row });
    });
    this.rebatch(live, keep);
  }

  private rebatch(live: Sequence[], refs: RowRef[]): void {
    this.running = live;
    const shape = this.engine().shape;
    this.kv = live.length > 0 ? pack(shape, refs) : undefined;
    this.deltaFeeds = this.factorsFor(live);
  }

  private factorsFor(rows: readonly Sequence[]): Record<string, Tensor> | undefined {
    return rows.some((s) => s.delta) ? deltaTensors(this.opts.deltaLayers, rows.map((s) => s.delta)) : undefined;
  }

  private report(kind: StepEvent['kind'], rows: number, tokens: number, started: number, graph: StepEvent['graph']): void {
    this.opts.onStep?.({ kind, rows, tokens, ms: performance.now() - started, graph });
  }
}
