/** What a load run measured, and the verdict of a scenario's thresholds on it. */
import type autocannon from 'autocannon';

export interface Summary {
  requests: number;
  errors: number;
  errorRate: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  tokensPerSecond: number;
  /** Human-readable lines, printed as they are (and pasted into BENCHMARKS.md). */
  lines: string[];
}

export interface Thresholds {
  errorRate: number;
  p95Ms: number;
  p99Ms?: number | undefined;
  metricsAtLeast?: Record<string, number>;
}

/** Sum of every sample of `name` (all label sets) in a Prometheus text exposition; undefined if absent. */
export function metricTotal(exposition: string, name: string): number | undefined {
  let total: number | undefined;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    total = (total ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** Exact percentile (nearest rank) of the recorded latencies. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Completion tokens in one response body: `usage.completion_tokens` of a JSON answer, or of the usage chunk
 * of an SSE stream (scenarios ask for `stream_options.include_usage`); otherwise the number of content chunks.
 */
export function tokensIn(body: string): number {
  if (body.startsWith('{')) {
    try {
      return (JSON.parse(body) as { usage?: { completion_tokens?: number } }).usage?.completion_tokens ?? 0;
    } catch {
      return 0;
    }
  }
  let chunks = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const chunk = JSON.parse(line.slice(6)) as { usage?: { completion_tokens?: number } | null; choices?: unknown[] };
    if (chunk.usage?.completion_tokens !== undefined) return chunk.usage.completion_tokens;
    if (chunk.choices && chunk.choices.length > 0) chunks++;
  }
  return chunks;
}

export function summarize(input: {
  result: autocannon.Result;
  latencies: readonly number[];
  statuses: ReadonlyMap<number, number>;
  completionTokens: number;
  seconds: number;
}): Summary {
  const { result, latencies, statuses } = input;
  const ok = [...statuses].filter(([s]) => s < 300).reduce((n, [, c]) => n + c, 0);
  const answered = [...statuses.values()].reduce((a, b) => a + b, 0);
  const transport = result.errors + result.timeouts;
  const requests = answered + transport;
  const errors = requests - ok;
  const summary = {
    requests,
    errors,
    errorRate: requests === 0 ? 1 : errors / requests,
    rps: requests / input.seconds,
    p50: percentile(latencies, 50),
    p95: percentile(latencies, 95),
    p99: percentile(latencies, 99),
    tokensPerSecond: input.completionTokens / input.seconds,
  };
  const byStatus = [...statuses].sort(([a], [b]) => a - b).map(([s, c]) => `${s}×${c}`).join(' ');
  const lines = [
    `  requests ${requests} (${byStatus}${transport ? `, transport errors ${transport}` : ''}), errors ${errors} (${(summary.errorRate * 100).toFixed(2)} %)`,
    `  RPS ${summary.rps.toFixed(2)}, latency p50 ${summary.p50.toFixed(0)} ms, p95 ${summary.p95.toFixed(0)} ms, p99 ${summary.p99.toFixed(0)} ms`,
    `  completion tokens/s ${summary.tokensPerSecond.toFixed(1)}`,
  ];
  return { ...summary, lines };
}

/** `metrics` = the gateway's /metrics text after the run (undefined when it was not scraped). */
export function judge(summary: Summary, t: Thresholds, metrics?: string): string[] {
  const failures: string[] = [];
  for (const [name, least] of Object.entries(t.metricsAtLeast ?? {})) {
    const value = metrics === undefined ? undefined : metricTotal(metrics, name);
    if (value === undefined || value < least) failures.push(`${name} = ${value ?? 'absent'} < ${least}`);
  }
  if (summary.requests === 0) failures.push('no request completed');
  if (summary.errorRate > t.errorRate) failures.push(`error rate ${summary.errorRate.toFixed(4)} > ${t.errorRate}`);
  if (!(summary.p95 <= t.p95Ms)) failures.push(`p95 ${summary.p95.toFixed(0)} ms > ${t.p95Ms} ms`);
  if (t.p99Ms !== undefined && !(summary.p99 <= t.p99Ms)) failures.push(`p99 ${summary.p99.toFixed(0)} ms > ${t.p99Ms} ms`);
  return failures;
}
