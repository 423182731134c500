/**
 * Log-probabilities of the model's own distribution at one position: log_softmax(logits), before
 * temperature, top-k/top-p, penalties and logit_bias (OpenAI's logprobs do not move with temperature;
 * vLLM calls this mode `raw_logprobs`). Computed in float64 from the float32 logits:
 *
 *   logprob(t) = l[t] − (m + log Σ_j exp(l[j] − m)),   m = max_j l[j]
 *
 * The top-k alternatives come from a bounded heap (top-k.ts), never from a full sort.
 */
import { topKIndices } from './top-k.ts';

export interface TopLogprob {
  token: number;
  logprob: number;
}

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The `k` most likely tokens at this position, most likely first (k = the request's top count). */
  top: TopLogprob[];
}

/** log Σ exp(l[j]) of one row: the normaliser every logprob of that position subtracts. */
export function logSumExp(logits: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > m) m = logits[i]!;
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += Math.exp(logits[i]! - m);
  return m + Math.log(s);
}

/** The logprob of `token` and of the `top` most likely tokens at a position whose logits are `logits`. */
export function tokenLogprob(logits: Float32Array, token: number, top: number): TokenLogprob {
  const lse = logSumExp(logits);
  const alternatives = top > 0 ? Array.from(topKIndices(logits, top), (t) => ({ token: t, logprob: logits[t]! - lse })) : [];
  return { token, logprob: logits[token]! - lse, top: alternatives };
}
