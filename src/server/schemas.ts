/**
 * zod schemas for the OpenAI request bodies Patchbay accepts, plus its extra fields. Optional fields are
 * `nullish` because OpenAI SDKs and many clients send `null` for "unset". Fields OpenAI defines but Patchbay
 * cannot honour are rejected when set to a non-neutral value instead of being silently ignored.
 */
import { z } from 'zod';

const tokenId = z.number().int().min(0);

const stopSchema = z
  .union([z.string(), z.array(z.string())], { error: 'stop must be a string or an array of strings' })
  .transform((s) => (typeof s === 'string' ? [s] : s))
  .pipe(z.array(z.string().min(1, 'stop sequences must not be empty')).max(4, 'at most 4 stop sequences'));

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
  condition: z
    .union([z.array(z.number().finite()).min(1), z.string().min(1)], {
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
  n: z
    .number()
    .int()
    .refine((n) => n === 1, 'only n = 1 is supported: Patchbay returns one choice per request')
    .nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  user: z.string().nullish(),
  ...extensions,
};

/** [field, is this value harmless to ignore?] for OpenAI features Patchbay does not implement. */
type Unsupported = [string, (v: unknown) => boolean];
const isZero = (v: unknown) => v === 0;
const isEmptyObject = (v: unknown) => typeof v === 'object' && v !== null && Object.keys(v).length === 0;
const PENALTIES: Unsupported[] = [
  ['presence_penalty', isZero],
  ['frequency_penalty', isZero],
  ['logit_bias', isEmptyObject],
];

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
        error: 'prompt must be a string, an array with one string, or an array of token ids',
      })
      .refine((p) => typeof p === 'string' || p.length > 0, 'prompt must not be empty')
      .refine(
        (p) => typeof p === 'string' || typeof p[0] === 'number' || p.length === 1,
        'only one prompt per request is supported',
      ),
    /** OpenAI's default for completions is 16. */
    max_tokens: z.number().int().min(1).nullish(),
  })
  .superRefine(
    rejectUnsupported([
      ...PENALTIES,
      ['echo', (v) => v === false],
      ['logprobs', (v) => v === 0],
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

export const ChatBody = z
  .looseObject({
    ...sampling,
    messages: z.array(chatMessage).min(1, 'messages must contain at least one message'),
    max_tokens: z.number().int().min(1).nullish(),
    /** OpenAI's newer name for max_tokens; the same limit. */
    max_completion_tokens: z.number().int().min(1).nullish(),
  })
  .superRefine(
    rejectUnsupported([
      ...PENALTIES,
      ['logprobs', (v) => v === false],
      ['top_logprobs', isZero],
      ['tools', (v) => Array.isArray(v) && v.length === 0],
      ['functions', (v) => Array.isArray(v) && v.length === 0],
      ['response_format', (v) => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text'],
    ]),
  );
export type ChatBody = z.infer<typeof ChatBody>;

/** The parts of both bodies that pick what serves a request (base, adapters, patches, generator). */
export type AttachFields = Pick<CompletionBody, 'model' | 'adapters' | 'patches' | 'condition'>;
