/**
 * Adapter metrics on the server's registry. Cache counters and sizes are read from `AdapterRegistry.stats()`
 * at scrape time, so the registry stays the one source of truth (no second set of counters to drift).
 * Label cardinality is bounded: `adapter` only ever holds an id that resolved, i.e. a registered adapter.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LoadEvent, MergeEvent, RegistryStats } from '../registry/adapter-registry.ts';
import type { GenerateEvent } from '../registry/generator-registry.ts';

type StatKey = keyof RegistryStats;

export class AdapterMetrics {
  #stats: (() => RegistryStats | undefined) | undefined;

  readonly loadSeconds: Histogram<'kind' | 'outcome'>;
  readonly mergeSeconds: Histogram<'type'>;
  readonly requests: Counter<'kind' | 'adapter'>;
  readonly generations: Counter<'generator' | 'cache'>;
  readonly generateSeconds: Histogram<'cache'>;

  constructor(registry: Registry) {
    this.loadSeconds = new Histogram({
      name: 'patchbay_adapter_load_duration_seconds',
      help: 'Time to read, validate and compile an adapter into delta factors (kind is unknown for failures).',
      labelNames: ['kind', 'outcome'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.mergeSeconds = new Histogram({
      name: 'patchbay_adapter_merge_duration_seconds',
      help: 'Time to compile a combination or named merge into factors (concatenation, plus truncated SVD when a rank is asked).',
      labelNames: ['type'] as const,
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.requests = new Counter({
      name: 'patchbay_adapter_requests_total',
      help: 'Generations by what served them: kind base / lora / s2ft / combination, adapter = the model id.',
      labelNames: ['kind', 'adapter'] as const,
      registers: [registry],
    });

    this.generations = new Counter({
      name: 'patchbay_generator_generations_total',
      help: 'Generated-factor lookups by generator: cache = miss (the generator ran), hit (cached factors), error (refused condition or output).',
      labelNames: ['generator', 'cache'] as const,
      registers: [registry],
    });
    this.generateSeconds = new Histogram({
      name: 'patchbay_generator_generate_duration_seconds',
      help: 'Time to obtain a request\'s generated factors: condition embedding + generator run + compile (miss), or the cache lookup (hit).',
      labelNames: ['cache'] as const,
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    });

    const current = () => this.#stats?.();
    // prom-client counters have no `set`; mirroring a monotonic source by reset + inc keeps the type right.
    const counter = (name: string, help: string, key: StatKey) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect(this: Counter) {
          this.reset();
          this.inc(current()?.[key] ?? 0);
        },
      });
    const gauge = (name: string, help: string, key: StatKey) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect(this: Gauge) {
          this.set(current()?.[key] ?? 0);
        },
      });
    counter('patchbay_adapter_cache_hits_total', 'Adapter / combination lookups served from host memory.', 'hits');
    counter('patchbay_adapter_cache_misses_total', 'Lookups that had to load (or wait for a load in flight).', 'misses');
    counter('patchbay_adapter_cache_evictions_total', 'Entries evicted to stay within PATCHBAY_CACHE_BYTES.', 'evictions');
    counter('patchbay_adapter_loads_total', 'Adapters and combinations compiled into host memory.', 'loads');
    gauge('patchbay_adapter_resident_bytes', 'Bytes of delta factors resident in host memory.', 'residentBytes');
    gauge('patchbay_adapter_resident', 'Adapters and combinations resident in host memory.', 'resident');
    gauge('patchbay_adapter_cache_capacity_bytes', 'The byte budget of the adapter cache.', 'maxBytes');
    gauge('patchbay_adapters_registered', 'Adapters and named merges known to the registry.', 'registered');
    gauge('patchbay_adapter_pinned_bytes', 'Bytes of pinned (never evicted) factors.', 'pinnedBytes');
    counter('patchbay_adapter_cache_revived_total', 'Misses answered by evicted factors a running sequence still held (no second copy).', 'revived');
  }

  /** The registry exists only once the runtime has loaded; until then the mirrored series read 0. */
  watch(stats: () => RegistryStats | undefined): void {
    this.#stats = stats;
  }

  recordLoad(event: LoadEvent): void {
    this.loadSeconds.observe({ kind: event.kind ?? 'unknown', outcome: event.error ? 'error' : 'ok' }, event.seconds);
  }

  recordGenerate(event: GenerateEvent): void {
    const cache = event.error ? 'error' : event.hit ? 'hit' : 'miss';
    this.generations.inc({ generator: event.id, cache });
    this.generateSeconds.observe({ cache }, event.seconds);
  }

  recordMerge(event: MergeEvent): void {
    this.mergeSeconds.observe({ type: event.key.startsWith('combo:') ? 'combination' : 'named' }, event.seconds);
  }

  recordRequest(kind: string, adapter: string): void {
    this.requests.inc({ kind, adapter });
  }
}
