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
  /**
   * JSON body. A string value that is exactly "$name" is replaced: "$base" by the base model id, "$adapter" by
   * an id from the adapter mix, any other name by what `discover` found.
   */
  body: z.record(z.string(), z.unknown()).optional(),
});

const adminCall = z.object({
  method: z.enum(['POST', 'GET', 'DELETE']).default('POST'),
  /** May hold "$name" placeholders, e.g. /admin/patches/$patch/apply. */
  path: z.string().startsWith('/'),
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
  /**
   * Admin API use (the runner sets PATCHBAY_ADMIN_TOKEN on the gateway it starts). `discover`: placeholder →
   * admin route whose first listed id it takes (e.g. {"patch": "/admin/patches"}); `setup`: calls made once
   * before the load; `during`: calls cycled every `everyMs` while the load runs (e.g. apply / remove a patch).
   */
  admin: z
    .object({
      discover: z.record(z.string().regex(/^[a-z]+$/), z.string().startsWith('/')).default({}),
      setup: z.array(adminCall).default([]),
      during: z.object({ everyMs: z.number().int().positive(), calls: z.array(adminCall).min(1) }).optional(),
    })
    .optional(),
  /**
   * Response header whose value must determine the answer: every 2xx answer with the same value of it has
   * the same text (greedy requests), e.g. x-patchbay-base-version while patches switch — no torn output.
   */
  consistentBy: z.string().optional(),
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
export type AdminCall = z.infer<typeof adminCall>;
/** Placeholder values by name, without the "$". */
export type Vars = Readonly<Record<string, string | undefined>>;

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

/** The body of one request with its "$name" values substituted ("$adapter" falls back to the base). */
export function expandBody(body: Record<string, unknown> | undefined, vars: Vars): string | undefined {
  if (!body) return undefined;
  return JSON.stringify(body, (_k, v: unknown) => {
    if (typeof v !== 'string' || !v.startsWith('$')) return v;
    const name = v.slice(1);
    return vars[name] ?? (name === 'adapter' ? vars['base'] : v);
  });
}

/** A path with its "$name" segments substituted. */
export function expandPath(path: string, vars: Vars): string {
  return path.replace(/\$([a-z]+)/g, (whole, name: string) => (vars[name] === undefined ? whole : encodeURIComponent(vars[name]!)));
}
