/**
 * Reading adapter directories for the registry: the start-up scan (header-only fit check) and one timed load
 * (the LoadEvent behind the `adapter.load` span and `patchbay_adapter_load_duration_seconds`).
 */
import { checkAdapter, loadAdapter, type AttachTarget, type LoadedAdapter } from '../adapters/index.ts';
import { PatchbayError } from '../errors.ts';
import { forRequest } from './errors.ts';
import type { RegistryOptions } from './registry-types.ts';

/** Check failures that mean "made for another base", as opposed to a damaged or unsupported file. */
const MISFIT_CODES = new Set(['adapter_base_mismatch', 'adapter_shape_mismatch', 'adapter_not_attachable']);

/** Why the adapter in `path` does not fit `target`, or undefined when it fits (or is merely broken). */
export function misfit(path: string, target: AttachTarget, id: string): Promise<string | undefined> {
  return checkAdapter(path, target, id).then(
    () => undefined,
    (err: unknown) => (err instanceof PatchbayError && MISFIT_CODES.has(err.code) ? err.message : undefined),
  );
}

/** Loads one directory, reporting the outcome and its duration to `onLoad`; errors name `param`, not paths. */
export async function timedLoad(opts: Pick<RegistryOptions, 'loader' | 'onLoad'>, target: AttachTarget, id: string, dir: string, param: string): Promise<LoadedAdapter> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  try {
    const loaded = await (opts.loader ?? loadAdapter)(dir, target, id);
    opts.onLoad?.({ id, seconds: seconds(), kind: loaded.kind, rank: loaded.rank, bytes: loaded.bytes });
    return loaded;
  } catch (err) {
    opts.onLoad?.({ id, seconds: seconds(), error: err });
    throw forRequest(err, param, id, dir);
  }
}
