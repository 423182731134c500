/**
 * What a request's sampling fields do to a row's logits before a token is drawn, in vLLM's order:
 * repetition penalty, then presence/frequency penalties, then logit_bias, then the min_tokens ban.
 * Logprobs are taken before any of this (logprobs.ts): they describe the model, not the sampler.
 *
 *   repetition_penalty ρ (vLLM / HF CTRL): for every token t in prompt ∪ generated,
 *       l[t] ← l[t] / ρ if l[t] > 0, else l[t] · ρ
 *   presence α_p, frequency α_f (OpenAI): with c[t] = times t was generated so far,
 *       l[t] ← l[t] − c[t]·α_f − [c[t] > 0]·α_p
 *   logit_bias b (OpenAI): l[t] ← l[t] + b[t]        (±100 bans or forces in practice)
 *   min_tokens m (vLLM): while fewer than m tokens were generated, l[t] ← −∞ for EOS and stop_token_ids
 */

export interface ProcessorParams {
  presencePenalty?: number;
  frequencyPenalty?: number;
  repetitionPenalty?: number;
  /** token id → additive bias. */
  logitBias?: ReadonlyMap<number, number>;
  minTokens?: number;
}

export class LogitsProcessor {
  /** Generated-token counts, for presence/frequency penalties. */
  private readonly counts = new Map<number, number>();
  /** Prompt ∪ generated, for the repetition penalty. */
  private readonly seen: Set<number>;
  private generated = 0;

  private constructor(
    private readonly params: ProcessorParams,
    promptIds: readonly number[],
    /** Ids that end a sequence (EOS unless ignored, stop_token_ids): banned until min_tokens. */
    private readonly enders: readonly number[],
  ) {
    this.seen = new Set(params.repetitionPenalty !== undefined && params.repetitionPenalty !== 1 ? promptIds : []);
  }

  /** undefined when the params change nothing: the row's logits are then sampled as they are, uncopied. */
  static create(params: ProcessorParams, promptIds: readonly number[], enders: readonly number[]): LogitsProcessor | undefined {
    const active =
      (params.presencePenalty ?? 0) !== 0 ||
      (params.frequencyPenalty ?? 0) !== 0 ||
      (params.repetitionPenalty ?? 1) !== 1 ||
      (params.logitBias?.size ?? 0) > 0 ||
      ((params.minTokens ?? 0) > 0 && enders.length > 0);
    return active ? new LogitsProcessor(params, promptIds, enders) : undefined;
  }

  /** Returns processed logits in a new array (the input may be shared by several rows of one prefill). */
  apply(logits: Float32Array): Float32Array {
    const out = new Float32Array(logits);
    const { presencePenalty = 0, frequencyPenalty = 0, repetitionPenalty = 1, logitBias, minTokens = 0 } = this.params;
    if (repetitionPenalty !== 1) {
      for (const t of this.seen) {
        const l = out[t]!;
        out[t] = l > 0 ? l / repetitionPenalty : l * repetitionPenalty;
      }
    }
    if (presencePenalty !== 0 || frequencyPenalty !== 0) {
      for (const [t, c] of this.counts) out[t] = out[t]! - c * frequencyPenalty - presencePenalty;
    }
    if (logitBias) for (const [t, b] of logitBias) out[t] = out[t]! + b;
    if (this.generated < minTokens) for (const t of this.enders) out[t] = -Infinity;
    return out;
  }

  /** Records a sampled token (called for every token the sequence keeps or ends on). */
  observe(token: number): void {
    this.generated++;
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
    if (this.params.repetitionPenalty !== undefined && this.params.repetitionPenalty !== 1) this.seen.add(token);
  }
}
