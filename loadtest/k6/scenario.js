// @ts-check
/**
 * k6 script for operators who have k6: runs one scenario file of loadtest/scenarios/ against a deployed gateway.
 *
 *   k6 run -e SCENARIO=smoke -e BASE_URL=http://patchbay.example:8080 loadtest/k6/scenario.js
 *   k6 run -e SCENARIO=adapters -e MODEL_IDS=tenant-a,tenant-b,tenant-c -e BASE_URL=... loadtest/k6/scenario.js
 *
 * Optional: DURATION (seconds, overrides the scenario's), API_KEY (tenant key for PATCHBAY_KEYS_FILE mode).
 * The scenario's thresholds become k6 thresholds, so k6 exits non-zero when one fails, like the built-in runner.
 * (k6 reads the whole response, so an SSE request is timed to its last event.)
 * Plain JavaScript so that any k6 version runs it; `// @ts-check` and JSDoc types let `npm test` type-check it
 * against @types/k6 (loadtest/k6/tsconfig.json).
 */
import { check } from 'k6';
import http from 'k6/http';
import { Counter } from 'k6/metrics';

/** @type {import('./scenario-file.ts').ScenarioFile} */
const scenario = JSON.parse(open(`../scenarios/${__ENV.SCENARIO ?? 'smoke'}.json`));
const baseUrl = (__ENV.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const modelIds = (__ENV.MODEL_IDS ?? '').split(',').filter((id) => id.length > 0);
const completionTokens = new Counter('completion_tokens');

const latency = [`p(95)<${scenario.thresholds.p95Ms}`];
if (scenario.thresholds.p99Ms !== undefined) latency.push(`p(99)<${scenario.thresholds.p99Ms}`);

export const options = {
  scenarios: {
    [scenario.name]: {
      executor: 'constant-vus',
      vus: scenario.connections,
      duration: `${__ENV.DURATION ?? scenario.duration}s`,
    },
  },
  thresholds: {
    http_req_failed: [`rate<=${scenario.thresholds.errorRate}`],
    http_req_duration: latency,
  },
};

/** @param {number[]} weights @returns {number[]} */
function cumulative(weights) {
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  return weights.map((w) => (acc += w / total));
}

/** @param {number[]} cdf @returns {number} */
function pick(cdf) {
  const u = Math.random();
  const i = cdf.findIndex((c) => u < c);
  return i < 0 ? cdf.length - 1 : i;
}

const requestCdf = cumulative(scenario.requests.map((r) => r.weight ?? 1));
const zipf = scenario.models?.zipf ?? 1;
const modelCdf = cumulative(modelIds.map((_, k) => 1 / (k + 1) ** zipf));

/** @returns {{ base: string }} */
export function setup() {
  const res = http.get(`${baseUrl}/v1/models`, { headers: authHeaders() });
  const list = /** @type {{ data: Array<{ id: string; parent?: string | null }> }} */ (res.json());
  const base = list.data.find((m) => !m.parent);
  if (!base) throw new Error(`${baseUrl}/v1/models lists no base model`);
  return { base: base.id };
}

/** @returns {Record<string, string>} */
function authHeaders() {
  return __ENV.API_KEY ? { authorization: `Bearer ${__ENV.API_KEY}` } : {};
}

/** @param {{ base: string }} data */
export default function (data) {
  const template = scenario.requests[pick(requestCdf)];
  const adapter = modelIds.length > 0 ? modelIds[pick(modelCdf)] : data.base;
  const body = template.body
    ? JSON.stringify(template.body, (_k, v) => (v === '$base' ? data.base : v === '$adapter' ? adapter : v))
    : null;
  const params = { headers: { 'content-type': 'application/json', ...authHeaders() } };
  const res = template.method === 'GET' ? http.get(`${baseUrl}${template.path}`, params) : http.post(`${baseUrl}${template.path}`, body, params);
  check(res, { 'status is 2xx': (r) => r.status >= 200 && r.status < 300 });
  const text = typeof res.body === 'string' ? res.body : '';
  const usage = /"completion_tokens":(\d+)/.exec(text);
  if (usage) completionTokens.add(Number(usage[1]));
}
