/**
 * The span of one generation request, GenAI-convention style (`text_completion tiny-gpt2`), with three
 * children drawn from the scheduler's timings once the sequence ended:
 *
 *   request ├─ adapter.load / adapter.merge … (while resolving; see adapter-spans.ts)
 *           ├─ generation.queue    submitted → joined a batch      (result.queueMs)
 *           ├─ generation.prefill  joined → first token sampled    (result.prefillMs, the batched prefill run)
 *           └─ generation.decode   first token → last token
 *
 * The runtime knows nothing of tracing: it reports durations on its result and the spans are placed here.
 * When tracing is off every span is the API's non-recording stub and the attribute code is skipped.
 */
import { context, propagation, SpanKind, trace, type Context, type Span, type TextMapGetter } from '@opentelemetry/api';
import { PatchbayError } from '../errors.ts';
import type { GenerationResult } from '../runtime/types.ts';
import { ATTR_ERROR_TYPE, GEN_AI, PATCHBAY, SPAN, type GenAiOperation } from './attributes.ts';
import { errorType, recordError } from './span-error.ts';
import { tracer } from './tracing.ts';

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};

export interface GenerationSpanStart {
  operation: GenAiOperation;
  /** The request's `model` field. */
  model: string;
  stream: boolean;
  requestId: string;
  /** Incoming headers: a caller's `traceparent` makes this span its child. */
  headers: Headers;
  /** `performance.now()` when the request arrived. */
  startTime: number;
}

export interface GenerationRequestInfo {
  /** The response's model (the base or an adapter id). */
  model: string;
  servedBy: string;
  /** The delta's cache key (adapter id or `combo:…`), when one rides along. */
  adapterKey?: string | undefined;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed?: number | undefined;
}

/**
 * `performance.now()` → epoch milliseconds, anchored once per request. The SDK anchors each span on its own
 * (Date.now() has 1 ms steps), which would let a child computed later poke out of its parent by up to 1 ms.
 */
const epochClock = () => {
  const offset = Date.now() - performance.now();
  return (t: number) => t + offset;
};

export class GenerationSpan {
  #submittedAt = 0;

  private constructor(
    private readonly span: Span,
    private readonly context: Context,
    private readonly operation: GenAiOperation,
    private readonly epoch: (t: number) => number,
  ) {}

  /** Runs `fn` with this span active, so the spans it causes (adapter loads, merges) become children. */
  within<T>(fn: () => T): T {
    return context.with(this.context, fn);
  }

  static start(s: GenerationSpanStart): GenerationSpan {
    const parent = propagation.extract(context.active(), s.headers, headerGetter);
    const epoch = epochClock();
    const span = tracer().startSpan(s.operation, { kind: SpanKind.SERVER, startTime: epoch(s.startTime) }, parent);
    if (span.isRecording()) {
      span.setAttributes({
        [GEN_AI.operation]: s.operation,
        [GEN_AI.requestModel]: s.model,
        [GEN_AI.stream]: s.stream,
        [PATCHBAY.requestId]: s.requestId,
      });
    }
    return new GenerationSpan(span, trace.setSpan(parent, span), s.operation, epoch);
  }

  /** The request resolved and is about to be queued. */
  submitted(info: GenerationRequestInfo, at = performance.now()): void {
    this.#submittedAt = at;
    if (!this.span.isRecording()) return;
    // Named after resolution, so the name holds a served model id, never arbitrary client input.
    this.span.updateName(`${this.operation} ${info.model}`);
    this.span.setAttributes({
      [GEN_AI.responseModel]: info.model,
      [GEN_AI.maxTokens]: info.maxTokens,
      [GEN_AI.temperature]: info.temperature,
      [GEN_AI.topP]: info.topP,
      [GEN_AI.topK]: info.topK,
      [PATCHBAY.servedBy]: info.servedBy,
    });
    if (info.seed !== undefined) this.span.setAttribute(GEN_AI.seed, info.seed);
    if (info.adapterKey !== undefined) this.span.setAttribute(PATCHBAY.adapterKey, info.adapterKey);
  }

  /** The sequence ended (stop, length or cancelled). */
  end(result: GenerationResult, at = performance.now()): void {
    if (this.span.isRecording()) {
      this.span.setAttributes({
        [GEN_AI.inputTokens]: result.promptTokens,
        [GEN_AI.outputTokens]: result.completionTokens,
        [GEN_AI.finishReasons]: [result.finishReason],
        [PATCHBAY.baseVersion]: result.baseVersion,
      });
      this.phases(result, at);
    }
    this.span.end(this.epoch(at));
  }

  /** The request failed: while resolving or validating (nothing queued), or the sequence failed. */
  fail(error: unknown, at = performance.now()): void {
    // As for HTTP server spans, a client's mistake (4xx) is marked by error.type but is no server error.
    if (error instanceof PatchbayError && error.status < 500) {
      if (this.span.isRecording()) this.span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
    } else {
      recordError(this.span, error);
    }
    this.span.end(this.epoch(at));
  }

  private phases(result: GenerationResult, end: number): void {
    const child = (name: string, from: number, to: number, tokens?: number) => {
      const span = tracer().startSpan(name, { startTime: this.epoch(from) }, this.context);
      if (tokens !== undefined) span.setAttribute(PATCHBAY.tokens, tokens);
      span.end(this.epoch(Math.min(to, end)));
    };
    const joined = this.#submittedAt + result.queueMs;
    child(SPAN.queue, this.#submittedAt, joined);
    if (result.prefillMs === undefined) return;
    const firstToken = joined + result.prefillMs;
    child(SPAN.prefill, joined, firstToken, result.promptTokens);
    child(SPAN.decode, firstToken, end, result.completionTokens);
  }
}
