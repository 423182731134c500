/** Shared runtime contracts: what the HTTP layer hands the scheduler and what it gets back. */
import type { TokenLogprob } from './logprobs.ts';

export type { TokenLogprob, TopLogprob } from './logprobs.ts';

export interface SamplingParams {
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 disables. */
  topP: number;
  /** 0 disables. */
  topK: number;
  /** Same seed + same request = same output. Unset: a random seed per request. */
  seed?: number;
  /** Generation ends before the first occurrence of any of these; the stop string is not returned. */
  stop: string[];
  /** Keep generating past EOS (vLLM's `ignore_eos`): fixed-length runs for benchmarks and load tests. */
  ignoreEos?: boolean;
  /** OpenAI: subtracted once from the logit of every token generated so far (−2…2). */
  presencePenalty?: number;
  /** OpenAI: subtracted per occurrence from the logit of every token generated so far (−2…2). */
  frequencyPenalty?: number;
  /** vLLM/HF: > 1 discourages tokens of the prompt and the output (divides positive logits, multiplies negative). */
  repetitionPenalty?: number;
  /** OpenAI: token id → bias added to its logit (−100 bans, +100 forces in practice). */
  logitBias?: ReadonlyMap<number, number>;
  /** vLLM: EOS and stop_token_ids are banned (and stop strings not checked) until this many tokens exist. */
  minTokens?: number;
  /** vLLM: these token ids end the sequence like EOS (finish_reason `stop`; the token is not returned). */
  stopTokenIds?: readonly number[];
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

/**
 * Low-rank factors that one sequence adds to targeted linear layers: y += (x·A)·B per layer.
 * `A` is row-major [dIn, rank], `B` is row-major [rank, dOut] (scale already folded into B).
 */
export interface LayerFactors {
  rank: number;
  a: Float32Array;
  b: Float32Array;
}

/** Per-request weight delta: graph layer name (e.g. `transformer.h.0.attn.c_attn`) → factors. */
export interface DeltaBinding {
  /** Stable identity (adapter id or canonical merge key), for logs, metrics and batching stats. */
  key: string;
  layers: ReadonlyMap<string, LayerFactors>;
}

export interface GenerationRequest {
  promptIds: number[];
  /** `maxTokens` 0 generates nothing: with `promptLogprobs` that scores the prompt (lm-eval's echo). */
  sampling: SamplingParams;
  /** Logprobs of every generated token, with this many top alternatives (0: the token's own only). */
  logprobs?: number;
  /** Logprobs of every prompt token but the first (which has no context), with this many alternatives. */
  promptLogprobs?: number;
  /** Aborting removes the sequence from the batch at the next step boundary. */
  signal?: AbortSignal;
  delta?: DeltaBinding;
}

export interface StreamEvent {
  tokenId: number;
  /** Newly decoded text since the previous event (may be '' while a multi-byte char is incomplete). */
  text: string;
  /** With `logprobs`: the entries of the tokens generated since the previous event (the text may lag them). */
  logprobs?: TokenLogprob[];
  /** With `logprobs`: the EOS / stop token that ended the sequence (not part of the text), on the last event. */
  endLogprob?: TokenLogprob;
  /** With `promptLogprobs`: sent once, first, after the prefill (one entry per prompt token, the first null). */
  promptLogprobs?: (TokenLogprob | null)[];
}

export interface GenerationResult {
  text: string;
  tokenIds: number[];
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** Base model version that served every step of this sequence (0 = pristine; -1 if it never ran). */
  baseVersion: number;
  /** Labels of that version, by change source (knowledge edits put `{editSeq}` under `edits`). */
  baseLabels?: Readonly<Record<string, unknown>>;
  /** Milliseconds spent queued before the first step. */
  queueMs: number;
  /** With `logprobs`: one entry per token in `tokenIds`, plus one for the EOS / stop token that ended it. */
  logprobs?: TokenLogprob[];
  /** The text was cut at a stop string (tokens past the cut are in `tokenIds` but not in `text`). */
  stoppedByString?: boolean;
  /** With `promptLogprobs`: one entry per prompt token, the first null. */
  promptLogprobs?: (TokenLogprob | null)[];
  /** Milliseconds from joining the batch to the first sampled token (its prefill run); absent when the
   *  sequence never left the queue. Decode time is the rest. */
  prefillMs?: number;
}

export interface GenerationHandle extends AsyncIterable<StreamEvent> {
  readonly id: string;
  /** Base version serving this sequence; undefined until it joins a batch (set before its first token). */
  readonly baseVersion: number | undefined;
  /** Labels of that version, by change source; undefined until it joins a batch. */
  readonly baseLabels?: Readonly<Record<string, unknown>> | undefined;
  readonly result: Promise<GenerationResult>;
}

export interface ChatMessage {
  role: string;
  content: string;
}
