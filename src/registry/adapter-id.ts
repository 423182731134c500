import { badRequest } from '../errors.ts';

/** An adapter's one identity: the name users put in `model` and operators register it under. */
export type AdapterId = string & { readonly __brand: 'AdapterId' };

/** Ids double as directory names under the adapter dir, so they must never contain a path. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function adapterId(raw: string, param = 'id'): AdapterId {
  if (!ID.test(raw) || raw.includes('..')) {
    throw badRequest(
      `invalid adapter id '${raw}': use 1–128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      param,
      'invalid_adapter_id',
    );
  }
  return raw as AdapterId;
}

export function isAdapterId(raw: string): raw is AdapterId {
  return ID.test(raw) && !raw.includes('..');
}
