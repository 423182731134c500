/**
 * Base-version metrics on the server's registry: the version serving new requests, how many are resident,
 * switches by source, and build time. The current version is read at scrape time from BaseVersions.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { SwapEvent } from '../runtime/versions/base-versions.ts';

export interface VersionReader {
  current(): { id: number };
  readonly resident: number;
}

export class BaseMetrics {
  #versions: (() => VersionReader | undefined) | undefined;
  readonly swaps: Counter<'source' | 'outcome'>;
  readonly buildSeconds: Histogram<'source'>;

  constructor(registry: Registry) {
    const current = () => this.#versions?.();
    new Gauge({
      name: 'patchbay_base_version',
      help: 'The base version new sequences start on (0 = the pristine model).',
      registers: [registry],
      collect(this: Gauge) {
        this.set(current()?.current().id ?? 0);
      },
    });
    new Gauge({
      name: 'patchbay_base_versions_resident',
      help: 'Base versions holding sessions: 1, or 2 while sequences that started before a switch still run.',
      registers: [registry],
      collect(this: Gauge) {
        this.set(current()?.resident ?? 0);
      },
    });
    this.swaps = new Counter({
      name: 'patchbay_base_swaps_total',
      help: 'Base-version switches by the source that published them (patches, edits); outcome error = build failed, nothing changed.',
      labelNames: ['source', 'outcome'] as const,
      registers: [registry],
    });
    this.buildSeconds = new Histogram({
      name: 'patchbay_base_build_seconds',
      help: 'Time to build a base version (patched weights and new sessions), off the request path.',
      labelNames: ['source'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
  }

  watch(versions: () => VersionReader | undefined): void {
    this.#versions = versions;
  }

  recordSwap(e: SwapEvent): void {
    this.swaps.inc({ source: e.source, outcome: e.error === undefined ? 'ok' : 'error' });
    if (e.error === undefined) this.buildSeconds.observe({ source: e.source }, e.buildMs / 1000);
  }
}
