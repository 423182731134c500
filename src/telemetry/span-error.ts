/** How a failure shows on a span: status ERROR, a bounded `error.type`, and the exception as an event. */
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { PatchbayError } from '../errors.ts';
import { ATTR_ERROR_TYPE } from './attributes.ts';

/** Patchbay's machine code (`adapter_not_found`, `queue_full`), else the error's class name. */
export function errorType(error: unknown): string {
  if (error instanceof PatchbayError) return error.code;
  return error instanceof Error ? error.name : 'unknown';
}

export function recordError(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  span.setAttribute(ATTR_ERROR_TYPE, errorType(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  if (error instanceof Error) span.recordException(error);
}
