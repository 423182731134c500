/**
 * One generation as the HTTP layer sees it, shared by the completions and chat routes: admission (503
 * unless ready), model resolution, context-length checks that name the right field, the link from the
 * client's connection to the sequence's abort signal, the request's trace span (telemetry/generation-span.ts)
 * and the metrics / access-log outcome when it ends.
 */
import type { Context } from 'hono';
import { PatchbayError } from '../errors.ts';
import { minTokens, type PromptBound } from '../runtime/prompt-bound.ts';
import type { GenerationHandle, GenerationResult, SamplingParams, StreamEvent } from '../runtime/types.ts';
import type { GenAiOperation } from '../telemetry/attributes.ts';
import { GenerationSpan } from '../telemetry/generation-span.ts';
import { clientClosed } from './cancellable.ts';
import type { Ticket } from './tenants/tenant-limits.ts';
import { admitTenant, resolverFor, type Tenancy } from './tenants/tenancy.ts';
import type { ServedTokenizer } from './contract.ts';
import type { AppEnv } from './env.ts';
import type { ServerMetrics } from './metrics.ts';
import type { Resolution } from './resolver.ts';
import type { AttachFields } from './schemas.ts';
import type { ServingState } from './state.ts';

export interface GenerationDeps {
  state: ServingState;
  metrics: ServerMetrics;
  /** Tenant keys, limits and the rank cap (tenants/tenancy.ts); absent = open mode without caps. */
  tenancy?: Tenancy | undefined;
}

export interface GenerationPlan {
  /** Route template, the metrics label. */
  route: string;
  /** The GenAI operation, for the request's span. */
  operation: GenAiOperation;
  stream: boolean;
  attach: AttachFields;
  /**
   * Characters of the longest prompt before any rendering or encoding (the text, or the messages' contents),
   * for the length check that runs first: a prompt that cannot fit is refused before any expensive work.
   */
  promptChars: number;
  /** Build the prompt(s) once the runtime (and its tokenizer) is known to be loaded; one choice group each. */
  prompts: (tokenizer: ServedTokenizer) => number[][];
  /** Request field holding the prompt, named in errors. */
  promptParam: 'prompt' | 'messages';
  /** The client's max_tokens, or undefined to use `defaultMaxTokens(room)` (room = context − prompt). */
  maxTokens: number | undefined;
  /** The field the client used for it (`max_tokens` or chat's `max_completion_tokens`). */
  maxTokensParam: string;
  defaultMaxTokens: (room: number) => number;
  sampling: Omit<SamplingParams, 'maxTokens'>;
  /** Completions per prompt (OpenAI's `n`); each prompt is prefilled once for all of them. */
  n: number;
  /** Alternatives per generated-token logprob; undefined: none. */
  logprobs?: number;
  /** Alternatives per prompt-token logprob (completions' echo + logprobs); undefined: none. */
  promptLogprobs?: number;
}

/** One choice of the response: prompt `promptIndex`, completion `index` (OpenAI: prompt · n + j). */
export interface Choice {
  index: number;
  promptIndex: number;
  handle: GenerationHandle;
}

/** A token event of one choice. */
export interface ChoiceEvent {
  index: number;
  event: StreamEvent;
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

/**
 * Refuses a prompt whose length alone proves it cannot fit: it has at least ⌈chars / B⌉ tokens, B being
 * the most characters one token covers (runtime/prompt-bound.ts). O(1): nothing is rendered or encoded.
 */
function refuseUnfittable(plan: GenerationPlan, context: number, bound: PromptBound): void {
  const least = minTokens(plan.promptChars, bound);
  if (least === 0) return;
  const completion = plan.maxTokens ?? 1;
  if (least < context && least + completion <= context) return;
  throw new PatchbayError({
    status: 400,
    code: 'context_length_exceeded',
    param: least >= context ? plan.promptParam : plan.maxTokensParam,
    message:
      `This model's maximum context length is ${context} tokens. The ${plan.promptParam === 'messages' ? 'messages have' : 'prompt has'} ` +
      `${plan.promptChars} characters, which is at least ${least} tokens (one token covers at most ` +
      `${bound.maxCharsPerToken} characters with this tokenizer), plus ${completion} for the completion. ` +
      `Please reduce the length of the prompt or max_tokens.`,
  });
}

/** The client left while the request waited (e.g. for an adapter load): nothing more is worth doing. */
function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw clientClosed();
}

/** Links the client's connection to a fresh controller: a client that goes away cancels its sequence. */
function linkToClient(c: Context<AppEnv>): { abort: AbortController; unlink: () => void } {
  const abort = new AbortController();
  const client = c.req.raw.signal;
  const cancel = () => abort.abort(client.reason);
  if (client.aborted) cancel();
  else client.addEventListener('abort', cancel, { once: true });
  return { abort, unlink: () => client.removeEventListener('abort', cancel) };
}

/** Token ids a sampling field names must exist in the vocabulary. */
function checkTokenIds(sampling: GenerationPlan['sampling'], vocabSize: number): void {
  const outside = (ids: Iterable<number>) => [...ids].find((id) => id >= vocabSize);
  const bias = outside(sampling.logitBias?.keys() ?? []);
  if (bias !== undefined) {
    throw new PatchbayError({ status: 400, code: 'invalid_value', param: 'logit_bias', message: `'logit_bias' names token ${bias}, outside the vocabulary (size ${vocabSize}).` });
  }
  const stop = outside(sampling.stopTokenIds ?? []);
  if (stop !== undefined) {
    throw new PatchbayError({ status: 400, code: 'invalid_value', param: 'stop_token_ids', message: `'stop_token_ids' names token ${stop}, outside the vocabulary (size ${vocabSize}).` });
  }
}

/** Sums what the choices of one request used; the prompt of each prompt group counts once (OpenAI). */
function combined(results: GenerationResult[], promptTokens: number): GenerationResult {
  const first = results[0]!;
  return { ...first, promptTokens, completionTokens: results.reduce((n, r) => n + r.completionTokens, 0) };
}

export class Generation {
  #finished: Promise<GenerationResult[]> | undefined;

  private constructor(
    private readonly c: Context<AppEnv>,
    private readonly deps: GenerationDeps,
    private readonly plan: GenerationPlan,
    readonly choices: Choice[],
    /** Prompt token ids, one entry per prompt. */
    readonly prompts: number[][],
    readonly resolution: Resolution,
    private readonly link: { abort: AbortController; unlink: () => void },
  ) {}

  static async start(c: Context<AppEnv>, deps: GenerationDeps, plan: GenerationPlan): Promise<Generation> {
    const serving = deps.state.admit();
    const { runtime } = serving;
    // Narrowed to what the caller's tenant may use (a forbidden id answers like an unknown one).
    const resolver = resolverFor(c, serving, deps.tenancy);
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
    let ticket: Ticket | undefined;
    try {
      // The tenant's in-flight and token limits: a 429 before any work.
      ticket = admitTenant(c, deps.tenancy);
      // Then, before resolving (an adapter load), rendering or tokenizing: all of those cost in proportion
      // to the prompt, and tokenizing is synchronous, so a huge prompt would stall every stream.
      refuseUnfittable(plan, runtime.model.contextLength, runtime.tokenizer.promptBound);
      resolution = await span.within(() => resolver.resolve(plan.attach, link.abort.signal));
      throwIfCancelled(link.abort.signal);
      const { contextLength, vocabSize } = runtime.model;
      const prompts = plan.prompts(runtime.tokenizer);
      let maxTokens = plan.maxTokens ?? contextLength;
      for (const promptIds of prompts) {
        const p = promptIds.length;
        if (p === 0) throw new PatchbayError({ status: 400, code: 'invalid_value', param: plan.promptParam, message: `'${plan.promptParam}' must not be empty.` });
        if (promptIds.some((id) => id >= vocabSize)) {
          throw new PatchbayError({ status: 400, code: 'invalid_value', param: plan.promptParam, message: `'${plan.promptParam}' has token ids outside the vocabulary (size ${vocabSize}).` });
        }
        const wanted = plan.maxTokens ?? plan.defaultMaxTokens(contextLength - p);
        // max_tokens 0 (scoring) may fill the context; anything that generates needs room for one token.
        if (p > contextLength || (p === contextLength && wanted > 0)) throw overflow(plan.promptParam, contextLength, p, wanted || 1);
        if (p + wanted > contextLength) throw overflow(plan.maxTokensParam, contextLength, p, wanted);
        maxTokens = Math.min(maxTokens, wanted);
      }
      checkTokenIds(plan.sampling, vocabSize);
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
      const choices: Choice[] = [];
      prompts.forEach((promptIds, promptIndex) => {
        const handles = runtime.scheduler.submitMany(
          {
            promptIds,
            sampling: { ...plan.sampling, maxTokens: plan.maxTokens ?? plan.defaultMaxTokens(contextLength - promptIds.length) },
            signal: link.abort.signal,
            ...(resolution!.delta ? { delta: resolution!.delta } : {}),
            ...(plan.logprobs !== undefined ? { logprobs: plan.logprobs } : {}),
            ...(plan.promptLogprobs !== undefined ? { promptLogprobs: plan.promptLogprobs } : {}),
          },
          plan.n,
        );
        handles.forEach((handle, j) => choices.push({ index: promptIndex * plan.n + j, promptIndex, handle }));
      });
      // Ended by the sequences themselves, whether or not the route ever awaits the results.
      const promptTokens = prompts.reduce((n, p) => n + p.length, 0);
      void Promise.all(choices.map((ch) => ch.handle.result)).then((results) => span.end(combined(results, promptTokens)), (err: unknown) => span.fail(err));
      const gen = new Generation(c, deps, plan, choices, prompts, resolution, link);
      // What the resolution holds is released once every choice has ended — on every path, failures included,
      // whether or not the route ever awaits the results.
      void Promise.allSettled(choices.map((ch) => ch.handle.result)).then((outcomes) => {
        const completion = outcomes.reduce((n, o) => n + (o.status === 'fulfilled' ? o.value.completionTokens : 0), 0);
        ticket?.done(promptTokens + completion);
        gen.#settle();
      });
      deps.metrics.adapters.recordRequest(resolution.kind, resolution.modelId);
      return gen;
    } catch (err) {
      span.fail(err);
      link.abort.abort(); // cancels the choices of earlier prompts if a later one was refused
      link.unlink();
      resolution?.release();
      ticket?.done(0);
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

  /** The base version serving this request, known once its sequences joined the batch (after the first event). */
  get baseVersion(): number | undefined {
    return this.choices[0]!.handle.baseVersion;
  }

  /** The change sources' labels of that version (e.g. `edits: {editSeq}`), known once it joined the batch. */
  get baseLabels(): Readonly<Record<string, unknown>> | undefined {
    return this.choices[0]!.handle.baseLabels;
  }

  /** Prompt tokens as OpenAI's usage counts them: each prompt once, however many choices it has. */
  get promptTokens(): number {
    return this.prompts.reduce((n, p) => n + p.length, 0);
  }

  /**
   * The token events of every choice, merged in arrival order; the first one is timed as time-to-first-token.
   */
  async *events(): AsyncGenerator<ChoiceEvent> {
    let first = true;
    const iterators = this.choices.map((ch) => ch.handle[Symbol.asyncIterator]());
    const next = (i: number) => iterators[i]!.next().then((r) => ({ i, r }));
    const pending = new Map(iterators.map((_, i) => [i, next(i)]));
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values());
      if (r.done) {
        pending.delete(i);
        continue;
      }
      pending.set(i, next(i));
      if (first) {
        first = false;
        const seconds = (performance.now() - this.c.get('startedAt')) / 1000;
        this.deps.metrics.timeToFirstToken.observe({ route: this.plan.route, stream: String(this.plan.stream) }, seconds);
      }
      yield { index: this.choices[i]!.index, event: r.value };
    }
  }

  /** Waits for every choice's result (in choice order) and records them exactly once (metrics, access log). */
  finish(): Promise<GenerationResult[]> {
    this.#finished ??= Promise.all(this.choices.map((ch) => ch.handle.result)).then((results) => {
      const completionTokens = results.reduce((n, r) => n + r.completionTokens, 0);
      this.deps.metrics.recordGeneration(
        this.resolution.modelId,
        this.promptTokens,
        completionTokens,
        results.some((r) => r.finishReason === 'cancelled'),
      );
      this.c.set('outcome', {
        model: this.resolution.modelId,
        promptTokens: this.promptTokens,
        completionTokens,
      });
      return results;
    });
    return this.#finished;
  }

  #settled = false;

  /** Unlinks the client and releases the resolution, once, however the sequence ended. */
  #settle(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.link.unlink();
    this.resolution.release();
  }
}

/** The knowledge-edit seq of the version that served a sequence (its `edits` label; 0 = no edit). */
export function editSeqOf(labels: Readonly<Record<string, unknown>> | undefined): number {
  const label = labels?.['edits'] as { editSeq?: unknown } | undefined;
  return typeof label?.editSeq === 'number' ? label.editSeq : 0;
}

/** OpenAI knows only 'stop' and 'length'; a cancelled sequence's client is gone, so 'abort' (vLLM's word)
 *  would only show up if something else cancelled it. */
export function openAIFinishReason(reason: GenerationResult['finishReason']): 'stop' | 'length' | 'abort' {
  return reason === 'cancelled' ? 'abort' : reason;
}
