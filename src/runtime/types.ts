/** Shared runtime contracts: what the HTTP layer hands the scheduler and what it gets back. */

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
  sampling: SamplingParams;
  /** Aborting removes the sequence from the batch at the next step boundary. */
  signal?: AbortSignal;
  delta?: DeltaBinding;
}

export interface StreamEvent {
  tokenId: number;
  /** Newly decoded text since the previous event (may be '' while a multi-byte char is incomplete). */
  text: string;
}

export interface GenerationResult {
  text: string;
  tokenIds: number[];
  promptTokens: number;
  completionTokens: number;
  finishReason: FinishReason;
  /** Base model version that served every step of this sequence (0 = pristine; -1 if it never ran). */
  baseVersion: number;
  /** Milliseconds spent queued before the first step. */
  queueMs: number;
  /** Milliseconds from joining the batch to the first sampled token (its prefill run); absent when the
   *  sequence never left the queue. Decode time is the rest. */
  prefillMs?: number;
}

export interface GenerationHandle extends AsyncIterable<StreamEvent> {
  readonly id: string;
  /** Base version serving this sequence; undefined until it joins a batch (set before its first token). */
  readonly baseVersion: number | undefined;
  readonly result: Promise<GenerationResult>;
}

export interface ChatMessage {
  role: string;
  content: string;
}
