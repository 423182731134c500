/**
 * One generation as the HTTP layer sees it, shared by the completions and chat routes: admission (503
 * unless ready), model resolution, context-length checks that name the right field, the link from the
 * client's connection to the sequence's abort signal, the request's trace span (telemetry/generation-span.ts)
 * and the metrics / access-log outcome when it ends.
 */
import type { Context } from 'hono';
import { PatchbayError } from '../errors.ts';
import type { GenerationHandle, GenerationResult, SamplingParams, StreamEvent } from '../runtime/types.ts';
import type { GenAiOperation } from '../telemetry/attributes.ts';
import { GenerationSpan } from '../telemetry/generation-span.ts';
import type { ServedTokenizer } from './contract.ts';
import type { AppEnv } from './env.ts';
import type { ServerMetrics } from './metrics.ts';
import type { Resolution } from './resolver.ts';
import type { AttachFields } from './schemas.ts';
import type { ServingState } from './state.ts';

export interface GenerationDeps {
  state: ServingState;
  metrics: ServerMetrics;
}

export interface GenerationPlan {
  /** Route template, the metrics label. */
  route: string;
  /** The GenAI operation, for the request's span. */
  operation: GenAiOperation;
  stream: boolean;
  attach: AttachFields;
  /** Build the prompt once the runtime (and its tokenizer) is known to be loaded. */
  promptIds: (tokenizer: ServedTokenizer) => number[];
  /** Request field holding the prompt, named in errors. */
  promptParam: 'prompt' | 'messages';
  /** The client's max_tokens, or undefined to use `defaultMaxTokens(room)` (room = context − prompt). */
  maxTokens: number | undefined;
  /** The field the client used for it (`max_tokens` or chat's `max_completion_tokens`). */
  maxTokensParam: string;
  defaultMaxTokens: (room: number) => number;
  sampling: Omit<SamplingParams, 'maxTokens'>;
}

const overflow = (param: string, context: number, prompt: number, completion: number) =>
  new PatchbayError({
    status: 400,
    code: 'context_length_exceeded',
    param,
    message:
      `This model's maximum context length is ${context} tokens. However, you requested ${prompt + completion} ` +
      `tokens (${prompt} in the prompt, ${completion} for the completion). ` +
      `Please reduce the length of the prompt or max_tokens.`,
  });

/** Links the client's connection to a fresh controller: a client that goes away cancels its sequence. */
function linkToClient(c: Context<AppEnv>): { abort: AbortController; unlink: () => void } {
  const abort = new AbortController();
  const client = c.req.raw.signal;
  const cancel = () => abort.abort(client.reason);
  if (client.aborted) cancel();
  else client.addEventListener('abort', cancel, { once: true });
  return { abort, unlink: () => client.removeEventListener('abort', cancel) };
}

export class Generation {
  #finished: Promise<GenerationResult> | undefined;

  private constructor(
    private readonly c: Context<AppEnv>,
    private readonly deps: GenerationDeps,
    private readonly plan: GenerationPlan,
    readonly handle: GenerationHandle,
    readonly resolution: Resolution,
    private readonly link: { abort: AbortController; unlink: () => void },
  ) {}

  static async start(c: Context<AppEnv>, deps: GenerationDeps, plan: GenerationPlan): Promise<Generation> {
    const { runtime, resolver } = deps.state.admit();
    const span = GenerationSpan.start({
      operation: plan.operation,
      model: plan.attach.model,
      stream: plan.stream,
      requestId: c.get('requestId'),
      headers: c.req.raw.headers,
      startTime: c.get('startedAt'),
    });
    // Linked before resolving, so a client leaving while an adapter loads aborts that too.
    const link = linkToClient(c);
    let resolution: Resolution | undefined;
    try {
      resolution = await span.within(() => resolver.resolve(plan.attach, link.abort.signal));
      const { contextLength, vocabSize } = runtime.model;
      const promptIds = plan.promptIds(runtime.tokenizer);
      const p = promptIds.length;
      if (p === 0) throw new PatchbayError({ status: 400, code: 'invalid_value', param: plan.promptParam, message: `'${plan.promptParam}' must not be empty.` });
      if (promptIds.some((id) => id >= vocabSize)) {
        throw new PatchbayError({ status: 400, code: 'invalid_value', param: plan.promptParam, message: `'${plan.promptParam}' has token ids outside the vocabulary (size ${vocabSize}).` });
      }
      if (p >= contextLength) throw overflow(plan.promptParam, contextLength, p, plan.maxTokens ?? 1);
      const maxTokens = plan.maxTokens ?? plan.defaultMaxTokens(contextLength - p);
      if (p + maxTokens > contextLength) throw overflow(plan.maxTokensParam, contextLength, p, maxTokens);
      const { temperature, topP, topK, seed } = plan.sampling;
      span.submitted({
        model: resolution.modelId,
        servedBy: resolution.kind,
        adapterKey: resolution.delta?.key,
        maxTokens,
        temperature,
        topP,
        topK,
        seed,
      });
      const handle = runtime.scheduler.submit({
        promptIds,
        sampling: { ...plan.sampling, maxTokens },
        signal: link.abort.signal,
        ...(resolution.delta ? { delta: resolution.delta } : {}),
      });
      // Ended by the sequence itself, whether or not the route ever awaits the result.
      void handle.result.then((result) => span.end(result), (err: unknown) => span.fail(err));
      deps.metrics.adapters.recordRequest(resolution.kind, resolution.modelId);
      return new Generation(c, deps, plan, handle, resolution, link);
    } catch (err) {
      span.fail(err);
      link.unlink();
      resolution?.release();
      throw err;
    }
  }

  /** True once the client went away (or the stream was aborted); nothing more should be written. */
  get aborted(): boolean {
    return this.link.abort.signal.aborted;
  }

  abort(): void {
    this.link.abort.abort();
  }

  /** The base version serving this sequence, known once it joined the batch (so after the first event). */
  get baseVersion(): number | undefined {
    return this.handle.baseVersion;
  }

  /** The token events; the first one is timed as time-to-first-token. */
  async *events(): AsyncGenerator<StreamEvent> {
    let first = true;
    for await (const event of this.handle) {
      if (first) {
        first = false;
        const seconds = (performance.now() - this.c.get('startedAt')) / 1000;
        this.deps.metrics.timeToFirstToken.observe({ route: this.plan.route, stream: String(this.plan.stream) }, seconds);
      }
      yield event;
    }
  }

  /** Waits for the result and records it exactly once (metrics, access-log outcome, adapter release). */
  finish(): Promise<GenerationResult> {
    this.#finished ??= this.handle.result.then(
      (result) => {
        this.#settle();
        this.deps.metrics.recordGeneration(
          this.resolution.modelId,
          result.promptTokens,
          result.completionTokens,
          result.finishReason === 'cancelled',
        );
        this.c.set('outcome', {
          model: this.resolution.modelId,
          promptTokens: result.promptTokens,
          completionTokens: result.completionTokens,
        });
        return result;
      },
      (err: unknown) => {
        this.#settle();
        throw err;
      },
    );
    return this.#finished;
  }

  #settle(): void {
    this.link.unlink();
    this.resolution.release();
  }
}

/** OpenAI knows only 'stop' and 'length'; a cancelled sequence's client is gone, so 'abort' (vLLM's word)
 *  would only show up if something else cancelled it. */
export function openAIFinishReason(reason: GenerationResult['finishReason']): 'stop' | 'length' | 'abort' {
  return reason === 'cancelled' ? 'abort' : reason;
}
