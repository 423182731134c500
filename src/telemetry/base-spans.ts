/**
 * Base-version switches as `base.swap` spans, timed from the measured drain wait + build + switch and
 * parented by whatever is active (the admin request that applied a patch). The runtime reports a finished
 * swap (versions/base-versions.ts) and knows nothing of OpenTelemetry.
 */
import type { Attributes } from '@opentelemetry/api';
import type { SwapEvent } from '../runtime/versions/base-versions.ts';
import { PATCHBAY, SPAN } from './attributes.ts';
import { recordError } from './span-error.ts';
import { tracer } from './tracing.ts';

/** Active patches as the patch manager labels them (`{patches: [{id, alpha}]}`), if that is the shape. */
function patchesOf(labels: Readonly<Record<string, unknown>>): { id: string; alpha: number }[] {
  const p = labels['patches'];
  return Array.isArray(p) ? p.filter((x): x is { id: string; alpha: number } => typeof x?.id === 'string' && typeof x?.alpha === 'number') : [];
}

export function traceSwap(e: SwapEvent): void {
  const end = performance.now();
  const patches = patchesOf(e.labels);
  const attributes: Attributes = {
    [PATCHBAY.baseFrom]: e.from,
    [PATCHBAY.baseTo]: e.to,
    [PATCHBAY.baseSource]: e.source,
    [PATCHBAY.baseChanged]: [...e.changed],
    [PATCHBAY.baseBuildMs]: e.buildMs,
    [PATCHBAY.baseSwitchMs]: e.switchMs,
    [PATCHBAY.baseDrainWaitMs]: e.drainWaitMs,
    [PATCHBAY.baseLabels]: JSON.stringify(e.labels),
    [PATCHBAY.patchIds]: patches.map((p) => p.id),
    [PATCHBAY.patchAlphas]: patches.map((p) => p.alpha),
  };
  const span = tracer().startSpan(SPAN.baseSwap, { startTime: end - (e.drainWaitMs + e.buildMs + e.switchMs), attributes });
  if (e.error !== undefined) recordError(span, e.error);
  span.end(end);
}
