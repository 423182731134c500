/**
 * The generator half of model resolution: `{model: "<generator id>", condition}` → factors generated for that
 * condition (cached by generator and condition hash), riding GenerationRequest.delta like any adapter's, so
 * rows with different conditions, generators and adapters share one batch.
 */
import { badRequest } from '../errors.ts';
import { deltaDisabled, type AdapterRegistry } from '../registry/adapter-registry.ts';
import type { GeneratorEntry, GeneratorRegistry } from '../registry/generator-registry.ts';
import { untilAborted } from './cancellable.ts';
import { modelNotFound, type ModelCard, type Resolution } from './resolver.ts';
import type { AttachFields } from './schemas.ts';

const release = () => {};

export function generatorCard(base: ModelCard, e: GeneratorEntry): ModelCard {
  return { ...base, id: e.id, created: e.created, root: e.id, parent: base.id };
}

/** Whether this request is for a generator (it names one, or carries a condition): then resolveGenerated. */
export function wantsGenerator(req: AttachFields, generators: GeneratorRegistry | undefined): boolean {
  return req.condition != null || generators?.has(req.model) === true || generators?.unfitReason(req.model) !== undefined;
}

export async function resolveGenerated(
  req: AttachFields,
  baseId: string,
  generators: GeneratorRegistry | undefined,
  adapters: AdapterRegistry,
  signal?: AbortSignal,
): Promise<Resolution> {
  const misfit = generators?.unfitReason(req.model);
  if (misfit !== undefined) throw badRequest(misfit, 'model', 'generator_base_mismatch');
  const entry = generators?.get(req.model);
  if (entry && !generators?.enabled) throw deltaDisabled('model');
  if (!entry || !generators) {
    if (req.model === baseId) {
      throw badRequest(`'condition' is for generators: '${baseId}' is the base model; name a generator in 'model' (see GET /v1/models)`, 'condition', 'not_a_generator');
    }
    if (adapters.enabled && adapters.has(req.model)) {
      throw badRequest(`'condition' is for generators: '${req.model}' is an adapter, which takes no condition`, 'condition', 'not_a_generator');
    }
    throw modelNotFound(req.model);
  }
  if (req.condition == null) {
    const examples = entry.manifest?.examples.length ? ` (e.g. ${JSON.stringify(entry.manifest.examples[0])})` : '';
    throw badRequest(`generator '${entry.id}' needs a 'condition': ${entry.manifest?.condition_dim ?? 'd_c'} numbers${entry.manifest?.string_condition ? ' or a string' + examples : ''}`, 'condition', 'condition_required');
  }
  for (const field of ['adapters', 'patches'] as const) {
    if (req[field] != null) throw badRequest(`'${field}' cannot be combined with a generator in one request; send them as separate requests`, field, 'not_available');
  }
  // A client that leaves while its factors are generated stops waiting at once; the generation is shared.
  const { binding } = await untilAborted(generators.factors(entry.id, req.condition, 'model'), signal);
  return { modelId: entry.id, kind: 'generator', delta: binding, editSeq: 0, release };
}
