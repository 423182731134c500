/**
 * Logprob entries (runtime/logprobs.ts) in OpenAI's two response shapes.
 *
 * Completions (`logprobs: k`): parallel arrays over the returned tokens, `tokens` (each token's text, or
 * `bytes:\xNN` for a partial UTF-8 character), `token_logprobs`, `top_logprobs` (per position a
 * {token text: logprob} map of the k most likely; `null` for an echoed prompt's first token, which has no
 * context) and `text_offset` (character offset of each token in the choice's `text`, echo included).
 *
 * Chat (`logprobs: true`, `top_logprobs: k`): `{content: [{token, logprob, bytes, top_logprobs: [...]}]}`.
 *
 * A stream cuts one choice's tokens over several chunks; the writer keeps the running text offset.
 */
import type { TokenLogprob, TopLogprob } from '../runtime/types.ts';
import { tokenString } from '../runtime/token-bytes.ts';
import type { ServedTokenizer } from './contract.ts';

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** One choice's completions logprobs, chunk by chunk (or all at once). */
export class CompletionLogprobsWriter {
  private offset: number;
  private readonly utf8 = new TextDecoder();

  constructor(
    private readonly tokenizer: ServedTokenizer,
    startOffset = 0,
  ) {
    this.offset = startOffset;
  }

  /** `entries[i]` null = a position without logprobs (an echoed prompt's first token, `tokens[i]`). */
  write(tokens: readonly number[], entries: readonly (TokenLogprob | null)[], limit = Infinity): CompletionLogprobs {
    const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (let i = 0; i < tokens.length && this.offset < limit; i++) {
      const bytes = this.tokenizer.tokenBytes(tokens[i]!);
      const entry = entries[i] ?? null;
      out.tokens.push(tokenString(bytes));
      out.text_offset.push(this.offset);
      out.token_logprobs.push(entry ? entry.logprob : null);
      out.top_logprobs.push(entry ? Object.fromEntries(entry.top.map((t) => [this.text(t.token), t.logprob])) : null);
      // Characters completed by this token's bytes: a partial character is counted with the token finishing it.
      this.offset += this.utf8.decode(bytes, { stream: true }).length;
    }
    return out;
  }

  private text(token: number): string {
    return tokenString(this.tokenizer.tokenBytes(token));
  }
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(tokenizer: ServedTokenizer, entries: readonly TokenLogprob[]): { content: ChatTokenLogprob[] } {
  const one = (t: TopLogprob) => {
    const bytes = tokenizer.tokenBytes(t.token);
    return { token: tokenString(bytes), logprob: t.logprob, bytes: Array.from(bytes) };
  };
  return { content: entries.map((e) => ({ ...one(e), top_logprobs: e.top.map(one) })) };
}
