/**
 * Prometheus metrics of the HTTP layer, on a registry this instance owns (no global default registry, so
 * several apps in one process, e.g. tests, never double-register). Queue depth and active sequences are
 * read from the scheduler at scrape time, so they are exact rather than sampled.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { AdapterMetrics } from './adapter-metrics.ts';
import { BaseMetrics } from './base-metrics.ts';
import type { ServedScheduler } from './contract.ts';
import type { StepEvent } from '../runtime/index.ts';

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop lag); off in tests that create many registries. */
  processMetrics?: boolean;
}

export class ServerMetrics {
  readonly registry = new Registry();
  #scheduler: (() => ServedScheduler | undefined) | undefined;

  readonly requests = new Counter({
    name: 'patchbay_http_requests_total',
    help: 'HTTP requests by route, method and status code.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly requestSeconds = new Histogram({
    name: 'patchbay_http_request_duration_seconds',
    help: 'Time from request arrival to the last byte of the response (end of stream for SSE).',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });

  readonly timeToFirstToken = new Histogram({
    name: 'patchbay_time_to_first_token_seconds',
    help: 'Time from request arrival to the first generated token (queue wait + prefill).',
    labelNames: ['route', 'stream'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly promptTokens = new Counter({
    name: 'patchbay_prompt_tokens_total',
    help: 'Prompt tokens of finished generations.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly completionTokens = new Counter({
    name: 'patchbay_completion_tokens_total',
    help: 'Generated tokens of finished generations (cancelled ones included).',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly cancelledSequences = new Counter({
    name: 'patchbay_sequences_cancelled_total',
    help: 'Sequences that left the batch early because their client disconnected.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly stepSeconds = new Histogram({
    name: 'patchbay_step_duration_seconds',
    help: 'One batched model run: prefill of newly admitted sequences or one decode step of the batch, by the graph it ran on (plain = no adapter row).',
    labelNames: ['kind', 'graph'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly stepRows = new Histogram({
    name: 'patchbay_step_batch_rows',
    help: 'Sequences in one batched model run (how well continuous batching fills the batch).',
    labelNames: ['kind'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  });

  readonly queueDepth: Gauge;
  readonly activeSequences: Gauge;
  readonly adapters = new AdapterMetrics(this.registry);
  readonly base = new BaseMetrics(this.registry);

  constructor(opts: MetricsOptions = {}) {
    const current = () => this.#scheduler?.();
    const read = (pick: (s: ServedScheduler) => number) =>
      function collect(this: Gauge) {
        const s = current();
        this.set(s ? pick(s) : 0);
      };
    this.queueDepth = new Gauge({
      name: 'patchbay_queue_depth',
      help: 'Sequences waiting to join the batch.',
      registers: [this.registry],
      collect: read((s) => s.queuedCount),
    });
    this.activeSequences = new Gauge({
      name: 'patchbay_active_sequences',
      help: 'Sequences in the running batch.',
      registers: [this.registry],
      collect: read((s) => s.activeCount),
    });
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'patchbay_' });
  }

  /** The scheduler appears only once the runtime has loaded; until then both gauges read 0. */
  watchScheduler(get: () => ServedScheduler | undefined): void {
    this.#scheduler = get;
  }

  /** Hooked to the runtime's `onStep`. */
  recordStep(step: StepEvent): void {
    this.stepSeconds.observe({ kind: step.kind, graph: step.graph }, step.ms / 1000);
    this.stepRows.observe({ kind: step.kind }, step.rows);
  }

  recordRequest(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.requestSeconds.observe({ route }, seconds);
  }

  recordGeneration(model: string, promptTokens: number, completionTokens: number, cancelled: boolean): void {
    this.promptTokens.inc({ model }, promptTokens);
    this.completionTokens.inc({ model }, completionTokens);
    if (cancelled) this.cancelledSequences.inc({ model });
  }
}
