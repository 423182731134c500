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

export function isMerge(id: string, param: string): PatchbayError {
  return badRequest(`'${id}' is a named merge; remove it with DELETE /admin/merges/${id}`, param, 'is_a_merge');
}

/** A named merge whose source adapter was unregistered after the merge was created. */
export function mergeSourceMissing(merge: string, source: string, param: string | null): PatchbayError {
  return new PatchbayError({
    status: 409,
    code: 'merge_source_missing',
    param,
    message: `merge '${merge}' needs adapter '${source}', which is no longer registered; register '${source}' again or delete the merge`,
  });
}

/** Sources kept changing while a lookup loaded them (a rare, repeated unregister/re-register race). */
export function adapterChanged(ids: readonly string[]): PatchbayError {
  return new PatchbayError({
    status: 409,
    code: 'adapter_changed',
    message: `adapter(s) ${ids.join(', ')} were re-registered while this request loaded them; retry`,
  });
}

interface Budget {
  maxBytes: number;
  pinnedBytes: number;
}

export function pinnedBudgetExceeded(id: string, bytes: number, b: Budget): PatchbayError {
  return new PatchbayError({
    status: 409,
    code: 'pinned_budget_exceeded',
    param: 'pinned',
    message: `cannot pin '${id}' (${bytes} bytes): pinned entries already hold ${b.pinnedBytes} of the ${b.maxBytes}-byte cache budget (PATCHBAY_CACHE_BYTES); unpin or remove one, or raise the budget`,
  });
}

export function adapterTooLarge(id: string, bytes: number, b: Budget, param: string | null): PatchbayError {
  const pinned = b.pinnedBytes > 0 ? ` (${b.pinnedBytes} bytes of it are pinned)` : '';
  return badRequest(
    `adapter ${id} needs ${bytes} bytes of factors, more than the ${b.maxBytes - b.pinnedBytes} bytes the adapter cache can hold${pinned}; raise PATCHBAY_CACHE_BYTES`,
    param,
    'adapter_too_large',
  );
}
