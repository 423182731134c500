/** Stops waiting for shared work (an adapter load others may also await) when this request is cancelled. */
import { PatchbayError } from '../errors.ts';

export function clientClosed(): PatchbayError {
  return new PatchbayError({ status: 499, code: 'client_closed_request', type: 'invalid_request_error', message: 'The client closed the request.' });
}

/**
 * Resolves like `work`, or rejects with a 499 as soon as `signal` aborts. The work itself goes on (a
 * single-flight adapter load is shared with other requests, and its result is cached for them).
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(clientClosed());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(clientClosed());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
