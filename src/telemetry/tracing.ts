/**
 * Trace export. With an OTLP endpoint (or an explicit exporter, for tests and benchmarks) this registers a
 * NodeTracerProvider — async-context propagation, W3C `traceparent` — whose BatchSpanProcessor posts
 * finished spans to `<endpoint>/v1/traces`. Without one nothing is registered: `tracer()` is then the API's
 * no-op tracer, every span Patchbay starts is a non-recording stub, and no timer, queue or socket exists.
 *
 * The rest of Patchbay only ever calls `tracer()` (and the API), never the SDK.
 */
import { context, diag, DiagLogLevel, propagation, trace, type DiagLogger, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';

export const TRACER_NAME = 'patchbay';

/**
 * The tracer every Patchbay span comes from. Looked up per use, not cached: a cached tracer would keep
 * delegating to whichever provider was registered when it was first used (tests register their own).
 */
export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

export interface TracingOptions {
  /** OTLP/HTTP base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT (`http://collector:4318`); unset = tracing off. */
  endpoint?: string | undefined;
  serviceName: string;
  /** Replaces the OTLP exporter (tests, benchmarks); tracing is on when this or `endpoint` is set. */
  exporter?: SpanExporter;
  /** Most finished spans waiting for export; once full, new spans are dropped and the SDK logs how many. */
  maxQueueSize?: number;
  /** Export errors and span drops are logged here (OpenTelemetry's `diag`, at warn level and above). */
  logger?: Logger;
  /** How long `shutdown()` waits for the last export (default SHUTDOWN_MS). */
  shutdownTimeoutMillis?: number;
}

export interface Tracing {
  readonly enabled: boolean;
  /**
   * Exports what is queued (for at most `shutdownTimeoutMillis`) and unregisters the provider. Idempotent; never rejects:
   * an unreachable collector is logged, it does not fail a clean shutdown.
   */
  shutdown(): Promise<void>;
}

/** A drain must not hang on a collector that is down (the exporter retries for up to its timeout). */
const SHUTDOWN_MS = 5_000;

/** Span export batching; the SDK's defaults, written out so they are visible and reviewed. */
const BATCH = { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 5_000, exportTimeoutMillis: 10_000 };

/** The signal path is appended to the base URL, as the OTLP spec says for OTEL_EXPORTER_OTLP_ENDPOINT. */
export function tracesUrl(endpoint: string): string {
  return new URL('v1/traces', endpoint.endsWith('/') ? endpoint : `${endpoint}/`).href;
}

const OFF: Tracing = { enabled: false, shutdown: () => Promise.resolve() };

/** Once per process at a time: the API's globals refuse a second provider until `shutdown()`. */
export function startTracing(opts: TracingOptions): Tracing {
  const endpoint = opts.endpoint;
  const exporter =
    opts.exporter ?? (endpoint ? new OTLPTraceExporter({ url: tracesUrl(endpoint), timeoutMillis: BATCH.exportTimeoutMillis }) : undefined);
  if (!exporter) return OFF;

  const log = opts.logger?.child({ component: 'tracing' });
  if (log) diag.setLogger(diagToPino(log), DiagLogLevel.WARN);
  const provider = new NodeTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: opts.serviceName })),
    spanProcessors: [new BatchSpanProcessor(exporter, { ...BATCH, maxQueueSize: opts.maxQueueSize ?? BATCH.maxQueueSize })],
  });
  // Also installs what spans need to nest across awaits (AsyncLocalStorage) and the W3C propagator that
  // continues a caller's `traceparent`.
  provider.register();

  const deadline = opts.shutdownTimeoutMillis ?? SHUTDOWN_MS;
  let stopping: Promise<void> | undefined;
  return {
    enabled: true,
    shutdown() {
      stopping ??= withDeadline(provider.shutdown(), deadline)
        .then(
          (done) => {
            if (!done) log?.warn(`gave up exporting the last spans after ${deadline} ms`);
          },
          (err: unknown) => {
            log?.warn({ err }, 'could not export the last spans');
          },
        )
        .finally(() => {
          trace.disable();
          context.disable();
          propagation.disable();
          if (log) diag.disable();
        });
      return stopping;
    },
  };
}

/** True if `work` settled in time (its rejection passes through), false if the deadline came first. */
function withDeadline(work: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  return Promise.race([work.then(() => true), deadline]).finally(() => clearTimeout(timer));
}

function diagToPino(log: Logger): DiagLogger {
  const at = (level: 'error' | 'warn' | 'info' | 'debug' | 'trace') => (message: string, ...args: unknown[]) =>
    log[level](args.length > 0 ? { args } : {}, message);
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), verbose: at('trace') };
}
