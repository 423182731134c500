/**
 * The one error type of Patchbay. Every layer throws it; the HTTP error handler turns it into an
 * OpenAI-style body `{error: {message, type, param, code}}` with `status`.
 */
export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'conflict_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'unavailable_error';

export interface PatchbayErrorOptions {
  status: number;
  code: string;
  message: string;
  type?: ErrorType;
  param?: string | null;
  cause?: unknown;
  /** Seconds a client should wait before retrying (the `Retry-After` header); every 429 carries one. */
  retryAfterSeconds?: number;
}

const DEFAULT_TYPE: Record<number, ErrorType> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'invalid_request_error',
  429: 'rate_limit_error',
  503: 'unavailable_error',
};

export class PatchbayError extends Error {
  readonly status: number;
  readonly code: string;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly retryAfterSeconds: number | undefined;

  constructor(opts: PatchbayErrorOptions) {
    super(opts.message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PatchbayError';
    this.status = opts.status;
    this.code = opts.code;
    this.type = opts.type ?? DEFAULT_TYPE[opts.status] ?? 'server_error';
    this.param = opts.param ?? null;
    this.retryAfterSeconds = opts.retryAfterSeconds ?? (opts.status === 429 ? 1 : undefined);
  }

  toBody(): { error: { message: string; type: ErrorType; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code = 'invalid_value') =>
  new PatchbayError({ status: 400, code, message, param });

export const notFound = (message: string, param: string | null = null, code = 'not_found') =>
  new PatchbayError({ status: 404, code, message, param });
