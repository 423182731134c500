/**
 * The adapter registry's hooks as spans. The registry reports finished work (a load, a merge, an eviction,
 * a cache hit) and knows nothing of OpenTelemetry; each report becomes a span timed from its measured
 * duration, parented by whatever span is active — the request whose lookup caused it (async context
 * carries it through the load), or none for a load through the admin API.
 *
 * A hit does no work, so it gets no span: it is an `adapter.cache_hit` event on the active (request) span.
 */
import { trace, type Attributes } from '@opentelemetry/api';
import type { HitEvent, LoadEvent, MergeEvent } from '../registry/adapter-registry.ts';
import type { GenerateEvent } from '../registry/generator-registry.ts';
import { EVENT, PATCHBAY, SPAN } from './attributes.ts';
import { recordError } from './span-error.ts';
import { tracer } from './tracing.ts';

/** A span for work that just finished and took `seconds`. */
function finished(name: string, seconds: number, attributes: Attributes, error?: unknown): void {
  const end = performance.now();
  const span = tracer().startSpan(name, { startTime: end - seconds * 1000, attributes });
  if (error !== undefined) recordError(span, error);
  span.end(end);
}

export function traceLoad(e: LoadEvent): void {
  const attributes: Attributes = { [PATCHBAY.adapterId]: e.id, [PATCHBAY.cacheHit]: false };
  if (e.kind !== undefined) attributes[PATCHBAY.adapterKind] = e.kind;
  if (e.rank !== undefined) attributes[PATCHBAY.adapterRank] = e.rank;
  if (e.bytes !== undefined) attributes[PATCHBAY.adapterBytes] = e.bytes;
  finished(SPAN.adapterLoad, e.seconds, attributes, e.error);
}

export function traceMerge(e: MergeEvent): void {
  finished(SPAN.adapterMerge, e.seconds, {
    [PATCHBAY.adapterKey]: e.key,
    [PATCHBAY.adapterIds]: e.parts.map((p) => p.id),
    [PATCHBAY.adapterWeights]: e.parts.map((p) => p.weight),
    [PATCHBAY.adapterRank]: e.rank,
    [PATCHBAY.adapterBytes]: e.bytes,
    [PATCHBAY.cacheHit]: false,
  });
}

/** Every generated-factor lookup is a span, hits included (`patchbay.cache.hit` tells them apart). */
export function traceGenerate(e: GenerateEvent): void {
  const attributes: Attributes = {
    [PATCHBAY.generatorId]: e.id,
    [PATCHBAY.conditionHash]: e.hash,
    [PATCHBAY.cacheHit]: e.hit,
    [PATCHBAY.generateSeconds]: e.seconds,
  };
  if (e.rank !== undefined) attributes[PATCHBAY.adapterRank] = e.rank;
  if (e.bytes !== undefined) attributes[PATCHBAY.adapterBytes] = e.bytes;
  finished(SPAN.adapterGenerate, e.seconds, attributes, e.error);
}

export function traceEvict(key: string, bytes: number, reason: 'evict' | 'delete'): void {
  finished(SPAN.adapterEvict, 0, { [PATCHBAY.adapterKey]: key, [PATCHBAY.adapterBytes]: bytes, [PATCHBAY.evictReason]: reason });
}

export function traceHit(e: HitEvent): void {
  trace.getActiveSpan()?.addEvent(EVENT.cacheHit, { [PATCHBAY.adapterKey]: e.key, [PATCHBAY.cacheType]: e.type });
}
