/**
 * The request-body limit (413 before the body is buffered) and its default, derived from the model's
 * context: a body larger than any prompt that could fit is refused without being read.
 */
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { PatchbayError } from '../errors.ts';
import type { PromptBound } from '../runtime/prompt-bound.ts';
import type { AppEnv } from './env.ts';

/** Room for everything besides the prompt: sampling fields, `adapters`, chat roles and JSON framing. */
export const BODY_OVERHEAD_BYTES = 64 * 1024;
/** JSON escapes one UTF-16 unit in at most 6 bytes (`\uXXXX`). */
const MAX_JSON_BYTES_PER_CHAR = 6;
/** Per token when the tokenizer gives no character bound: a token id is at most 7 digits and a comma. */
const FALLBACK_BYTES_PER_TOKEN = 64;

/**
 * The largest body a prompt that fits the context can need: context × B characters (B = most characters
 * per token), each escaped in at most 6 bytes, plus fixed overhead. For the embedded model (context 256,
 * B = 14): 64 KiB + 21 504 B = 85 KiB.
 */
export function defaultBodyBytes(contextLength: number, bound: PromptBound): number {
  const perToken = Number.isFinite(bound.maxCharsPerToken) ? bound.maxCharsPerToken * MAX_JSON_BYTES_PER_CHAR : FALLBACK_BYTES_PER_TOKEN;
  return BODY_OVERHEAD_BYTES + contextLength * perToken;
}

/**
 * Routes whose body is an open-ended NDJSON stream read line by line as it arrives (each line bounded by the
 * route itself). hono's bodyLimit reads a chunked body to its end before the handler runs, which would hold
 * every line of a live edit stream until the client closed it.
 */
export const STREAMED_BODY_PATHS: ReadonlySet<string> = new Set(['/admin/edits/stream']);

/** `limit` is read per request: the derived default is only known once the model has loaded. */
export function limitBody(limit: () => number): MiddlewareHandler<AppEnv> {
  return async function limitRequestBody(c, next) {
    if (STREAMED_BODY_PATHS.has(c.req.path)) return next();
    const maxSize = limit();
    return bodyLimit({
      maxSize,
      onError() {
        throw new PatchbayError({
          status: 413,
          code: 'request_too_large',
          message: `The request body exceeds the limit of ${maxSize} bytes.`,
        });
      },
    })(c, next);
  };
}
