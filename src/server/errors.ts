/**
 * The one place errors become HTTP responses. Handlers and middleware throw (`PatchbayError`, `ZodError`,
 * hono's `HTTPException`); this turns each into an OpenAI-shaped body and never leaks internals on a 500.
 */
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ZodError, type z } from 'zod';
import { PatchbayError } from '../errors.ts';
import { ChatTemplateError } from '../runtime/chat-template.ts';
import { InvalidGenerationError } from '../runtime/request-validation.ts';
import type { AppEnv } from './env.ts';

/** `messages[0].content` style, the way OpenAI names nested parameters. */
export function paramName(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? String(seg) : `.${String(seg)}`;
  return out === '' ? null : out;
}

export function fromZodError(err: ZodError): PatchbayError {
  const issue: z.core.$ZodIssue | undefined = err.issues[0];
  if (!issue) return new PatchbayError({ status: 400, code: 'invalid_request', message: 'Invalid request body.' });
  const param = paramName(issue.path);
  // `reportInput` puts the offending value on the issue; JSON cannot say `undefined`, so that means absent.
  const missing = (issue.code === 'invalid_type' || issue.code === 'invalid_union') && issue.input === undefined;
  if (missing && param) {
    return new PatchbayError({ status: 400, code: 'missing_required_parameter', param, message: `Missing required parameter: '${param}'.` });
  }
  const where = param ? `Invalid value for '${param}'` : 'Invalid request body';
  return new PatchbayError({
    status: 400,
    code: issue.code === 'invalid_type' ? 'invalid_type' : 'invalid_value',
    param,
    message: `${where}: ${issue.message}.`,
  });
}

/** Runtime field → the request field a client sent it as. */
const RUNTIME_PARAMS: Record<string, string> = { promptIds: 'prompt', maxTokens: 'max_tokens', topP: 'top_p', topK: 'top_k' };

function toPatchbayError(err: unknown): PatchbayError | undefined {
  if (err instanceof PatchbayError) return err;
  if (err instanceof ZodError) return fromZodError(err);
  if (err instanceof InvalidGenerationError) {
    return new PatchbayError({ status: 400, code: 'invalid_value', param: RUNTIME_PARAMS[err.param] ?? err.param, message: err.message, cause: err });
  }
  if (err instanceof ChatTemplateError) {
    return new PatchbayError({
      status: 400,
      code: 'chat_template_error',
      param: 'messages',
      message: `The model's chat template refused these messages: ${err.message}`,
      cause: err,
    });
  }
  if (err instanceof HTTPException && err.status < 500) {
    return new PatchbayError({ status: err.status, code: 'http_error', message: err.message || `HTTP ${err.status}` });
  }
  return undefined;
}

export function errorResponse(c: Context<AppEnv>, err: PatchbayError): Response {
  // Whole seconds, at least 1: the delta-seconds form of RFC 9110 §10.2.3.
  if (err.retryAfterSeconds !== undefined) c.header('Retry-After', String(Math.max(1, Math.ceil(err.retryAfterSeconds))));
  return c.json(err.toBody(), err.status as ContentfulStatusCode);
}

export const onError: ErrorHandler<AppEnv> = function onError(err, c) {
  const known = toPatchbayError(err);
  // Expected refusals (4xx, 503 while loading or draining) are visible in the access log line already.
  if (known && (known.status < 500 || known.status === 503)) return errorResponse(c, known);
  // Failures: log the cause with the request id so an operator can find it; the client only gets the id.
  c.get('logger').error({ err, requestId: c.get('requestId') }, 'request failed');
  if (known) return errorResponse(c, known);
  return errorResponse(
    c,
    new PatchbayError({
      status: 500,
      code: 'internal_error',
      type: 'server_error',
      message: `The server had an error while processing the request (request id ${c.get('requestId')}).`,
    }),
  );
};

export const notFoundHandler: NotFoundHandler<AppEnv> = function notFoundHandler(c) {
  return errorResponse(
    c,
    new PatchbayError({ status: 404, code: 'unknown_route', message: `Unknown route: ${c.req.method} ${c.req.path}` }),
  );
};
