/**
 * zod schemas for the OpenAI request bodies Patchbay accepts, plus its extra fields. Optional fields are
 * `nullish` because OpenAI SDKs and many clients send `null` for "unset". Fields OpenAI defines but Patchbay
 * cannot honour are rejected when set to a non-neutral value instead of being silently ignored.
 */
import { z } from 'zod';
import { MAX_STOP_CHARS, MAX_STOPS } from '../runtime/stop-scan.ts';

const tokenId = z.number().int().min(0);
/** Most choices per prompt the schema accepts; the runtime also caps n at its batch size. */
export const MAX_N = 16;
/** Most prompts in one completions request (each is its own group of n sequences). */
export const MAX_PROMPTS = 64;

const stopSchema = z
  .union([z.string(), z.array(z.string())], { error: 'stop must be a string or an array of strings' })
  .transform((s) => (typeof s === 'string' ? [s] : s))
  .pipe(
    z
      .array(
        z
          .string()
          .min(1, 'stop sequences must not be empty')
          // The scan is linear (runtime/stop-scan.ts), but the automaton and held-back text grow with length.
          .max(MAX_STOP_CHARS, `stop sequences must be at most ${MAX_STOP_CHARS} characters`),
      )
      .max(MAX_STOPS, `at most ${MAX_STOPS} stop sequences`),
  );

/** Patchbay extensions; validated now so clients get field-level errors before the features land. */
const extensions = {
  adapters: z
    .array(z.object({ id: z.string().min(1), weight: z.number().finite().default(1) }))
    .min(1)
    .max(16)
    .nullish(),
  patches: z
    .array(z.object({ id: z.string().min(1), alpha: z.number().finite().default(1) }))
    .min(1)
    .max(16)
    .nullish(),
  /** A generator's condition: a vector (its length is checked against the generator's) or a string it embeds. */
  condition: z
    .union([z.array(z.number().finite()).min(1).max(65_536), z.string().min(1).max(4096)], {
      error: 'condition must be a non-empty array of numbers or a non-empty string',
    })
    .nullish(),
};

const sampling = {
  model: z.string({ error: 'model must be a string' }).min(1),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  /** Extension (vLLM): 0 disables. */
  top_k: z.number().int().min(0).nullish(),
  /** Extension (vLLM): keep generating past EOS, for fixed-length load tests and benchmarks. */
  ignore_eos: z.boolean().nullish(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop: stopSchema.nullish(),
  /** Choices per prompt; the runtime also caps it at the batch size (PATCHBAY_MAX_BATCH). */
  n: z.number().int().min(1).max(MAX_N, `n must be between 1 and ${MAX_N}`).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  /** Extension (vLLM): > 1 discourages repetition of prompt and output tokens. */
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  /** Token id (as a string key, OpenAI's shape) → bias in [−100, 100]. */
  logit_bias: z
    .record(z.string().regex(/^\d+$/, 'logit_bias keys must be token ids'), z.number().min(-100).max(100))
    .refine((b) => Object.keys(b).length <= 300, 'logit_bias may name at most 300 tokens')
    .nullish(),
  /** Extension (vLLM): no EOS / stop token / stop string ends the output before this many tokens. */
  min_tokens: z.number().int().min(0).nullish(),
  /** Extension (vLLM): token ids that end the output like EOS. */
  stop_token_ids: z.array(tokenId).max(64).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  user: z.string().nullish(),
  ...extensions,
};

/** [field, is this value harmless to ignore?] for OpenAI features Patchbay does not implement. */
type Unsupported = [string, (v: unknown) => boolean];

/** Cross-field rules both bodies share. */
function checkSampling(body: { min_tokens?: number | null | undefined; max_tokens?: number | null | undefined }, ctx: z.RefinementCtx): void {
  if (body.min_tokens != null && body.max_tokens != null && body.min_tokens > body.max_tokens) {
    ctx.addIssue({ code: 'custom', path: ['min_tokens'], message: 'min_tokens must not exceed max_tokens' });
  }
}

function rejectUnsupported(fields: Unsupported[]) {
  return (body: Record<string, unknown>, ctx: z.RefinementCtx) => {
    for (const [field, neutral] of fields) {
      const v = body[field];
      if (v !== undefined && v !== null && !neutral(v)) {
        ctx.addIssue({ code: 'custom', path: [field], message: `${field} is not supported by this server` });
      }
    }
    if (body.stream !== true && body.stream_options != null) {
      ctx.addIssue({ code: 'custom', path: ['stream_options'], message: 'stream_options is only allowed when stream is true' });
    }
  };
}

export const CompletionBody = z
  .looseObject({
    ...sampling,
    prompt: z
      .union([z.string(), z.array(z.string()), z.array(tokenId), z.array(z.array(tokenId))], {
        error: 'prompt must be a string, an array of strings, an array of token ids, or an array of those',
      })
      .refine((p) => typeof p === 'string' || p.length > 0, 'prompt must not be empty')
      .refine((p) => typeof p === 'string' || typeof p[0] === 'number' || p.length <= MAX_PROMPTS, `at most ${MAX_PROMPTS} prompts per request`),
    echo: z.boolean().nullish(),
    /** OpenAI: logprobs of the k most likely tokens at each position, 0–5. */
    logprobs: z.number().int().min(0).max(5).nullish(),
    /** OpenAI's default for completions is 16; 0 with echo scores the prompt without generating. */
    max_tokens: z.number().int().min(0).nullish(),
  })
  .superRefine(checkSampling)
  .superRefine(
    rejectUnsupported([
      ['best_of', (v) => v === 1],
      ['suffix', (v) => v === ''],
    ]),
  );
export type CompletionBody = z.infer<typeof CompletionBody>;

const textPart = z.object({ type: z.literal('text'), text: z.string() });
const chatMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  // Content parts are joined: Patchbay serves text-only models, so other part types are rejected.
  content: z
    .union([z.string(), z.array(textPart)], { error: 'content must be a string or an array of text parts' })
    .nullish(),
  name: z.string().nullish(),
});

/** Chat messages, also accepted by /tokenize. */
export const ChatMessages = z.array(chatMessage).min(1, 'messages must contain at least one message');

export const ChatBody = z
  .looseObject({
    ...sampling,
    messages: ChatMessages,
    max_tokens: z.number().int().min(1).nullish(),
    /** OpenAI's newer name for max_tokens; the same limit. */
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    /** OpenAI: alternatives per token, 0–20; needs logprobs: true. */
    top_logprobs: z.number().int().min(0).max(20).nullish(),
  })
  .superRefine((body, ctx) => {
    checkSampling({ min_tokens: body.min_tokens, max_tokens: body.max_completion_tokens ?? body.max_tokens }, ctx);
    if (body.top_logprobs != null && body.logprobs !== true) {
      ctx.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'top_logprobs requires logprobs: true' });
    }
  })
  .superRefine(
    rejectUnsupported([
      ['tools', (v) => Array.isArray(v) && v.length === 0],
      ['functions', (v) => Array.isArray(v) && v.length === 0],
      ['response_format', (v) => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text'],
    ]),
  );
export type ChatBody = z.infer<typeof ChatBody>;

/** The parts of both bodies that pick what serves a request (base, adapters, patches, generator). */
export type AttachFields = Pick<CompletionBody, 'model' | 'adapters' | 'patches' | 'condition'>;
