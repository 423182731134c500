import { randomUUID } from 'node:crypto';
import type { EngineLease } from './scheduler.ts';
import { LogitsProcessor } from './logits-processors.ts';
import { tokenLogprob, type TokenLogprob } from './logprobs.ts';
import { Sampler } from './sampler.ts';
import { StopScanner } from './stop-scan.ts';
import { IncrementalDecoder, type TextTokenizer } from './tokenizer.ts';
import type {
  DeltaBinding,
  FinishReason,
  GenerationHandle,
  GenerationRequest,
  GenerationResult,
  StreamEvent,
} from './types.ts';

/**
 * One generation in flight: owns its sampler, detokenizer and stop-string state, and hands tokens to its
 * consumer as an async iterable while the scheduler drives it. The KV cache is not here: it lives in the
 * scheduler's batch (see batch-kv.ts), so a sequence that decodes alongside others costs no copies.
 */
export class Sequence implements GenerationHandle {
  readonly id = randomUUID();
  readonly promptIds: number[];
  readonly generated: number[] = [];
  readonly delta: DeltaBinding | undefined;
  readonly signal: AbortSignal | undefined;
  /** Alternatives per prompt-token logprob; undefined = the prompt's logprobs are not needed. */
  readonly promptLogprobsTop: number | undefined;
  /** Sequences of one `n` > 1 request share this token: admitted together, prefilled once. */
  readonly group: object | undefined;
  readonly result: Promise<GenerationResult>;
  readonly enqueuedAt = performance.now();
  startedAt: number | undefined;
  /** When the first token was sampled, i.e. the end of this sequence's (batched) prefill. */
  firstTokenAt: number | undefined;
  /** Base version serving this sequence; undefined until it joins a batch. */
  baseVersion: number | undefined;
  /** The change sources' labels of that version (e.g. `edits: {editSeq}`); undefined until it joins a batch. */
  baseLabels: Readonly<Record<string, unknown>> | undefined;
  /** The scheduler's hold on that version, returned by `leave()` when the sequence leaves the batch. */
  lease: EngineLease | undefined;
  finishReason: FinishReason | undefined;

  private readonly maxTokens: number;
  private readonly minTokens: number;
  /** EOS (unless ignored) and stop_token_ids: the sequence ends on them and does not keep them. */
  private readonly eos: ReadonlySet<number>;
  private readonly sampler: Sampler;
  private readonly processor: LogitsProcessor | undefined;
  /** Alternatives per generated-token logprob; undefined = logprobs not asked for. */
  private readonly logprobsTop: number | undefined;
  private readonly tokenLogprobs: TokenLogprob[] = [];
  /** Logprob entries not yet handed out with an event. */
  private pendingLogprobs: TokenLogprob[] = [];
  /** The logprob of the EOS / stop token that ended the sequence, sent with the last event. */
  private endLogprob: TokenLogprob | undefined;
  private promptLogprobs: (TokenLogprob | null)[] | undefined;
  private readonly decoder: IncrementalDecoder;
  private readonly stops: StopScanner;
  private text = '';
  private stoppedByString = false;
  private emitted = 0;
  private readonly events: StreamEvent[] = [];
  private wake: (() => void) | undefined;
  private resolveResult!: (r: GenerationResult) => void;
  private rejectResult!: (e: unknown) => void;
  private error: unknown;

  constructor(request: GenerationRequest, tokenizer: TextTokenizer, eosTokenIds: readonly number[], group?: object) {
    this.promptIds = request.promptIds;
    this.promptLogprobsTop = request.promptLogprobs;
    this.group = group;
    this.delta = request.delta;
    this.signal = request.signal;
    const sampling = request.sampling;
    this.maxTokens = sampling.maxTokens;
    this.minTokens = sampling.minTokens ?? 0;
    this.eos = new Set([...(sampling.ignoreEos ? [] : eosTokenIds), ...(sampling.stopTokenIds ?? [])]);
    this.sampler = new Sampler(sampling);
    this.processor = LogitsProcessor.create(sampling, request.promptIds, [...this.eos]);
    this.logprobsTop = request.logprobs;
    this.decoder = new IncrementalDecoder(tokenizer);
    this.stops = new StopScanner(request.sampling.stop);
    this.result = new Promise((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    // Callers that only iterate must not see an unhandled rejection; the iterator rethrows it.
    this.result.catch(() => undefined);
  }

  get finished(): boolean {
    return this.finishReason !== undefined || this.error !== undefined;
  }

  /** Tokens the model has seen so far (prompt + generated). */
  get length(): number {
    return this.promptIds.length + this.generated.length;
  }

  get lastToken(): number {
    return this.generated.length > 0 ? this.generated[this.generated.length - 1]! : this.promptIds[this.promptIds.length - 1]!;
  }

  /**
   * The end of this sequence's prefill: `logits` are its last position's, `promptLogprobs` (when asked for)
   * its prompt's. With max_tokens 0 nothing is sampled (scoring only). Returns true when the sequence is done.
   * `logits` may be shared with other rows of an n > 1 group: nothing here writes to it.
   */
  prefilled(logits: Float32Array, promptLogprobs?: (TokenLogprob | null)[]): boolean {
    this.promptLogprobs = promptLogprobs;
    if (promptLogprobs) {
      this.events.push({ tokenId: -1, text: '', promptLogprobs });
      this.wakeConsumer();
    }
    if (this.maxTokens > 0) return this.step(logits);
    this.firstTokenAt ??= performance.now();
    this.finish('length');
    return true;
  }

  /** Samples from this row's logits and records the token; returns true when the sequence is done. */
  step(logits: Float32Array): boolean {
    const token = this.sampler.next(this.processor ? this.processor.apply(logits) : logits);
    this.processor?.observe(token);
    this.firstTokenAt ??= performance.now();
    // An ending token is not kept in the text or tokenIds, but its logprob is reported (as vLLM does):
    // lm-eval's echo scoring with max_tokens 1 counts on exactly one generated entry.
    if (this.logprobsTop !== undefined) {
      const entry = tokenLogprob(logits, token, this.logprobsTop);
      this.tokenLogprobs.push(entry);
      if (this.eos.has(token)) this.endLogprob = entry;
      else this.pendingLogprobs.push(entry);
    }
    if (this.eos.has(token)) {
      this.finish('stop', token);
      return true;
    }
    this.generated.push(token);
    const piece = this.decoder.push(token);
    this.text += piece;
    // Each character is scanned once, whatever the stop strings (stop-scan.ts); vLLM: before min_tokens,
    // stop strings do not end the sequence either.
    const found = this.stops.push(piece);
    const stopAt = this.generated.length < this.minTokens ? -1 : found;
    if (stopAt >= 0) {
      this.text = this.text.slice(0, stopAt);
      this.stoppedByString = true;
      this.finish('stop', token);
      return true;
    }
    if (this.generated.length >= this.maxTokens) {
      this.finish('length', token);
      return true;
    }
    this.emit(token, this.text.length - this.stops.held);
    return false;
  }

  finish(reason: FinishReason, lastToken = -1): void {
    if (this.finished) return;
    this.finishReason = reason;
    if (reason !== 'cancelled') this.emit(lastToken, this.text.length);
    this.resolveResult({
      text: this.text,
      tokenIds: [...this.generated],
      promptTokens: this.promptIds.length,
      completionTokens: this.generated.length,
      finishReason: reason,
      baseVersion: this.baseVersion ?? -1,
      ...(this.logprobsTop !== undefined ? { logprobs: [...this.tokenLogprobs] } : {}),
      ...(this.stoppedByString ? { stoppedByString: true } : {}),
      ...(this.promptLogprobs ? { promptLogprobs: this.promptLogprobs } : {}),
      baseLabels: this.baseLabels ?? {},
      queueMs: (this.startedAt ?? performance.now()) - this.enqueuedAt,
      ...(this.startedAt !== undefined && this.firstTokenAt !== undefined ? { prefillMs: this.firstTokenAt - this.startedAt } : {}),
    });
    this.wakeConsumer();
  }

  /** Returns the version lease (idempotent); the scheduler calls it when the row leaves the batch. */
  leave(): void {
    this.lease?.release();
    this.lease = undefined;
  }

  fail(error: unknown): void {
    if (this.finished) return;
    this.error = error;
    this.rejectResult(error);
    this.wakeConsumer();
  }

  private emit(tokenId: number, upTo: number): void {
    const end = this.endLogprob;
    this.endLogprob = undefined;
    if (upTo <= this.emitted && tokenId < 0 && this.pendingLogprobs.length === 0 && !end) return;
    const text = upTo > this.emitted ? this.text.slice(this.emitted, upTo) : '';
    this.emitted = Math.max(this.emitted, upTo);
    const logprobs = this.pendingLogprobs;
    this.pendingLogprobs = [];
    this.events.push({ tokenId, text, ...(logprobs.length > 0 ? { logprobs } : {}), ...(end ? { endLogprob: end } : {}) });
    this.wakeConsumer();
  }

  private wakeConsumer(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamEvent> {
    for (;;) {
      while (this.events.length > 0) yield this.events.shift()!;
      if (this.error !== undefined) throw this.error;
      if (this.finishReason !== undefined) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}
