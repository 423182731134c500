/**
 * Span and attribute names. `gen_ai.*` follow the OpenTelemetry GenAI semantic conventions; they are still
 * "incubating", and the semantic-conventions package advises copying incubating names rather than importing
 * them (they may change in a minor release), so they are written out here. `patchbay.*` are our own.
 */
export { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';

export const SPAN = {
  adapterLoad: 'adapter.load',
  adapterMerge: 'adapter.merge',
  adapterEvict: 'adapter.evict',
  adapterGenerate: 'adapter.generate',
  queue: 'generation.queue',
  prefill: 'generation.prefill',
  decode: 'generation.decode',
  baseSwap: 'base.swap',
} as const;

/** Span events. */
export const EVENT = {
  /** An adapter or combination served from host memory (no load or merge span follows). */
  cacheHit: 'adapter.cache_hit',
} as const;

export const GEN_AI = {
  operation: 'gen_ai.operation.name',
  requestModel: 'gen_ai.request.model',
  responseModel: 'gen_ai.response.model',
  maxTokens: 'gen_ai.request.max_tokens',
  temperature: 'gen_ai.request.temperature',
  topP: 'gen_ai.request.top_p',
  topK: 'gen_ai.request.top_k',
  seed: 'gen_ai.request.seed',
  stream: 'gen_ai.request.stream',
  inputTokens: 'gen_ai.usage.input_tokens',
  outputTokens: 'gen_ai.usage.output_tokens',
  finishReasons: 'gen_ai.response.finish_reasons',
} as const;

export type GenAiOperation = 'chat' | 'text_completion';

export const PATCHBAY = {
  requestId: 'patchbay.request.id',
  /** What served the request: `base`, the adapter's kind (`lora`, `s2ft`) or `combination`. */
  servedBy: 'patchbay.served_by',
  /** Adapter id (load) or cache key (adapter id or `combo:…`, for merges, evictions and the request). */
  adapterId: 'patchbay.adapter.id',
  adapterKey: 'patchbay.adapter.key',
  adapterKind: 'patchbay.adapter.kind',
  adapterRank: 'patchbay.adapter.rank',
  adapterBytes: 'patchbay.adapter.bytes',
  /** Combination parts, index-aligned. */
  adapterIds: 'patchbay.adapter.ids',
  adapterWeights: 'patchbay.adapter.weights',
  cacheHit: 'patchbay.cache.hit',
  /** Lookup type on cache-hit events: `adapter` or `combination`. */
  cacheType: 'patchbay.cache.type',
  /** `evict` (over PATCHBAY_CACHE_BYTES) or `delete` (unregistered, or the registry closed). */
  evictReason: 'patchbay.evict.reason',
  /** adapter.generate: the generator id, the condition's hash (its cache identity) and the lookup's seconds. */
  generatorId: 'patchbay.generator.id',
  conditionHash: 'patchbay.condition.hash',
  generateSeconds: 'patchbay.generate.seconds',
  baseVersion: 'patchbay.base.version',
  /** base.swap: the version switched from / to, which source published, what it changed and took. */
  baseFrom: 'patchbay.base.from',
  baseTo: 'patchbay.base.to',
  baseSource: 'patchbay.base.source',
  baseChanged: 'patchbay.base.changed_initializers',
  baseBuildMs: 'patchbay.base.build_ms',
  baseSwitchMs: 'patchbay.base.switch_ms',
  baseDrainWaitMs: 'patchbay.base.drain_wait_ms',
  /** Every source's label on the new version, as JSON (e.g. `{"patches":[{"id":"rws-typos","alpha":1}]}`). */
  baseLabels: 'patchbay.base.labels',
  /** Active global patches on the new version, index-aligned ids and alphas. */
  patchIds: 'patchbay.patch.ids',
  patchAlphas: 'patchbay.patch.alphas',
  /** Tokens a phase processed: the prompt for prefill, generated tokens for decode. */
  tokens: 'patchbay.tokens',
} as const;
