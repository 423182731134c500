/**
 * Load scenarios are data (loadtest/scenarios/<name>.json): the built-in runner and the k6 scripts read the
 * same files. This module validates one and expands its request templates.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

const requestTemplate = z.object({
  /** Relative share of this request among the scenario's requests. */
  weight: z.number().positive().default(1),
  path: z.string().startsWith('/'),
  method: z.enum(['POST', 'GET']).default('POST'),
  /** JSON body; the string "$base" is replaced by the base model id, "$adapter" by an id from the mix. */
  body: z.record(z.string(), z.unknown()).optional(),
});

export const scenarioSchema = z.object({
  name: z.string(),
  description: z.string(),
  /** Concurrent clients, each sending its next request as soon as the previous answer has arrived. */
  connections: z.number().int().positive(),
  /** Seconds; `--duration` overrides it. */
  duration: z.number().positive(),
  server: z.object({ env: z.record(z.string(), z.string()).default({}) }).default({ env: {} }),
  /** Runner only: copies of shipped adapters under new ids in a temporary adapter dir (k6: pass MODEL_IDS). */
  adapterCopies: z.object({ of: z.array(z.string()).min(1), count: z.number().int().positive(), prefix: z.string() }).optional(),
  /** How "$adapter" is drawn: Zipf over the ids with exponent s (rank 1 most popular). */
  models: z.object({ zipf: z.number().positive() }).optional(),
  requests: z.array(requestTemplate).min(1),
  thresholds: z.object({
    /** Share of requests that may fail (non-2xx or transport error). */
    errorRate: z.number().min(0).max(1),
    p95Ms: z.number().positive(),
    p99Ms: z.number().positive().optional(),
    /**
     * Prometheus series (summed over labels, read from /metrics after the run) with the least value they must
     * reach, so a scenario proves it exercised what it is about (e.g. evictions for `adapters`).
     */
    metricsAtLeast: z.record(z.string().regex(/^patchbay_[a-z0-9_]+$/), z.number()).default({}),
  }),
});

export type Scenario = z.infer<typeof scenarioSchema>;
export type RequestTemplate = z.infer<typeof requestTemplate>;

export const SCENARIO_DIR = join(import.meta.dirname, '..', 'scenarios');

export async function loadScenario(name: string): Promise<Scenario> {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`scenario names are lower-case words: ${JSON.stringify(name)}`);
  let text: string;
  try {
    text = await readFile(join(SCENARIO_DIR, `${name}.json`), 'utf8');
  } catch {
    throw new Error(`no scenario ${name} (loadtest/scenarios/${name}.json)`);
  }
  const parsed = scenarioSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`loadtest/scenarios/${name}.json: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Cumulative weights of a Zipf law over n ranks: P(rank k) ∝ 1 / k^s. */
export function zipfCdf(n: number, s: number): number[] {
  const w = Array.from({ length: n }, (_, k) => 1 / (k + 1) ** s);
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0;
  return w.map((x) => (acc += x / total));
}

/** Index drawn from a cumulative distribution with the uniform number u ∈ [0, 1). */
export function drawIndex(cdf: readonly number[], u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (u < cdf[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The body of one request: the template with "$base" / "$adapter" substituted. */
export function expandBody(body: Record<string, unknown> | undefined, ids: { base: string; adapter?: string }): string | undefined {
  if (!body) return undefined;
  return JSON.stringify(body, (_k, v: unknown) => (v === '$base' ? ids.base : v === '$adapter' ? (ids.adapter ?? ids.base) : v));
}
