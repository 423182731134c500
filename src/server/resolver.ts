/**
 * What a request's `model` (and `adapters` / `patches` / `condition`) resolves to. Today only the base model
 * exists; the adapter registry will provide another `ModelResolver` (or wrap this one) without touching the
 * routes, which only ever call `list`, `get` and `resolve`.
 */
import { PatchbayError } from '../errors.ts';
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

export interface BaseResolverOptions {
  id: string;
  contextLength: number;
  /** Unix seconds the model was loaded. */
  created: number;
}

/** Knows the base model only; requests that attach anything get a 400 saying it is not available yet. */
export function createBaseResolver(opts: BaseResolverOptions): ModelResolver {
  const card: ModelCard = {
    id: opts.id,
    object: 'model',
    created: opts.created,
    owned_by: 'patchbay',
    root: opts.id,
    parent: null,
    max_model_len: opts.contextLength,
  };
  return {
    list: () => [{ ...card }],
    get: (id) => (id === card.id ? { ...card } : undefined),
    async resolve(req) {
      if (req.model !== card.id) throw modelNotFound(req.model);
      for (const field of ['adapters', 'patches', 'condition'] as const) {
        if (req[field] != null) {
          throw new PatchbayError({
            status: 400,
            code: 'not_available',
            param: field,
            message: `'${field}' is not available yet on this server.`,
          });
        }
      }
      return { modelId: card.id, editSeq: 0, release: () => {} };
    },
  };
}
