/**
 * What a request's `model` (and `adapters` / `patches` / `condition`) resolves to. The routes only ever call
 * `list`, `get` and `resolve`; `createBaseResolver` knows the base alone, adapter-resolver.ts adds adapters.
 */
import { notFound, PatchbayError } from '../errors.ts';
import type { DeltaBinding } from '../runtime/types.ts';
import type { AttachFields } from './schemas.ts';

/** One entry of `GET /v1/models`, in the OpenAI shape with vLLM's `root` / `parent` / `max_model_len`. */
export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  root: string;
  /** The base model's id for adapters, merges and generators; null for the base itself. */
  parent: string | null;
  max_model_len: number;
}

/** What serves one request. `release` must be called once the generation ended (it unpins adapters). */
export interface Resolution {
  /** Echoed as the response's `model`. */
  modelId: string;
  /** What serves it, a bounded metrics label: `base`, the adapter's kind (`lora`, `s2ft`) or `combination`. */
  kind: string;
  delta?: DeltaBinding;
  /** Last knowledge edit applied to what serves this request (`x-patchbay-edit-seq`). */
  editSeq: number;
  release(): void;
}

export interface ModelResolver {
  list(): ModelCard[];
  get(id: string): ModelCard | undefined;
  /** Throws PatchbayError 404 `model_not_found` for unknown ids, 400 for unusable attachments. */
  resolve(req: AttachFields, signal?: AbortSignal): Promise<Resolution>;
}

export function modelNotFound(id: string): PatchbayError {
  return new PatchbayError({
    status: 404,
    code: 'model_not_found',
    param: 'model',
    message: `The model '${id}' does not exist or is not served here; see GET /v1/models.`,
  });
}

/** The one 404 for an `adapters[i].id` that is unknown — or forbidden to the caller (tenants/): same bytes. */
export function adapterNotFound(id: string, param: string): PatchbayError {
  return notFound(`adapter '${id}' does not exist; see GET /v1/models`, param, 'adapter_not_found');
}

/** 400 for request fields this server cannot honour yet. */
export function notAvailable(field: string): PatchbayError {
  return new PatchbayError({ status: 400, code: 'not_available', param: field, message: `'${field}' is not available yet on this server.` });
}

export interface BaseResolverOptions {
  id: string;
  contextLength: number;
  /** Unix seconds the model was loaded. */
  created: number;
}

export function baseCard(opts: BaseResolverOptions): ModelCard {
  return {
    id: opts.id,
    object: 'model',
    created: opts.created,
    owned_by: 'patchbay',
    root: opts.id,
    parent: null,
    max_model_len: opts.contextLength,
  };
}

/** Knows the base model only; requests that attach anything get a 400 saying it is not available yet. */
export function createBaseResolver(opts: BaseResolverOptions): ModelResolver {
  const card = baseCard(opts);
  return {
    list: () => [{ ...card }],
    get: (id) => (id === card.id ? { ...card } : undefined),
    async resolve(req) {
      if (req.model !== card.id) throw modelNotFound(req.model);
      for (const field of ['adapters', 'patches', 'condition'] as const) if (req[field] != null) throw notAvailable(field);
      return { modelId: card.id, kind: 'base', editSeq: 0, release: () => {} };
    },
  };
}
