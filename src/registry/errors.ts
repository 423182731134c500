/** The registry's own refusals, and how loader errors are presented to the request that caused them. */
import { badRequest, PatchbayError } from '../errors.ts';

export function deltaDisabled(param: string | null = null): PatchbayError {
  return badRequest(
    'adapters are not available: this server was started without delta branches (PATCHBAY_DELTA_TARGETS=none)',
    param,
    'adapters_disabled',
  );
}

/**
 * Loader errors name their param `adapter` and may quote file paths; the caller knows which request field
 * it was, and clients of public routes must not learn server paths, so `<dir>/file` becomes `<id>/file`.
 */
export function forRequest(err: unknown, param: string, id: string, dir: string): unknown {
  if (!(err instanceof PatchbayError) || err.status >= 500) return err;
  const message = err.message.replaceAll(dir, id);
  return new PatchbayError({ status: err.status, code: err.code, type: err.type, message, param, cause: err.cause });
}
