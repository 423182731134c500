/**
 * The shape of a loadtest/scenarios/<name>.json file as the k6 script reads it (k6 runs without zod; the
 * built-in runner validates the same files with the full schema in loadtest/lib/scenario.ts).
 */
export interface RequestTemplate {
  weight?: number;
  path: string;
  method?: 'POST' | 'GET';
  body?: Record<string, unknown>;
}

export interface ScenarioFile {
  name: string;
  connections: number;
  duration: number;
  models?: { zipf: number };
  requests: RequestTemplate[];
  thresholds: { errorRate: number; p95Ms: number; p99Ms?: number };
}
