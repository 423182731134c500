/**
 * `npm run loadtest -- <scenario> [--duration <s>] [--url <gateway>]`: runs one scenario file with autocannon
 * against a gateway it starts on a free loopback port (or against --url), prints a summary and exits non-zero
 * when a threshold fails. The same scenario files drive loadtest/k6/scenario.js for operators who have k6.
 */
import { cpus, loadavg, tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { startServer, type ServerProcess } from '../bench/lib/server-process.ts';
import { seededRandom } from '../src/runtime/sampler.ts';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { copyAdapters } from './lib/adapter-copies.ts';
import { AdminClient, startDuring } from './lib/admin.ts';
import { answerText, ConsistencyCheck } from './lib/consistency.ts';
import { drawIndex, expandBody, loadScenario, zipfCdf, type Scenario, type Vars } from './lib/scenario.ts';
import { judge, metricTotal, summarize, tokensIn, type Summary } from './lib/summary.ts';

function usage(message: string): never {
  process.stderr.write(`loadtest: ${message}\nusage: npm run loadtest -- <scenario> [--duration <seconds>] [--url <gateway url>]\n`);
  process.exit(2);
}

async function baseModelId(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/models`);
  const models = (await res.json()) as { data: Array<{ id: string; parent?: string | null }> };
  const base = models.data.find((m) => !m.parent);
  if (!base) throw new Error('the gateway lists no base model');
  return base.id;
}

/** What one connection is waiting for (autocannon keeps one request in flight per connection). */
interface ConnectionContext {
  template?: number;
}

async function run(scenario: Scenario, url: string, vars: Vars, adapterIds: readonly string[], seconds: number, consistency?: ConsistencyCheck): Promise<Summary> {
  const random = seededRandom(1234); // a rerun sends the same request mix
  const weights = scenario.requests.map((r) => r.weight);
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  const requestCdf = weights.map((w) => (acc += w / total));
  const adapterCdf = adapterIds.length > 0 ? zipfCdf(adapterIds.length, scenario.models?.zipf ?? 1) : [];
  const latencies: number[] = [];
  let completionTokens = 0;
  const statuses = new Map<number, number>();
  const transportErrors = new Map<string, number>();

  const options: autocannon.Options = {
    url,
    connections: scenario.connections,
    duration: seconds,
    timeout: 60,
    requests: [
      {
        setupRequest: (request, context: ConnectionContext) => {
          const index = drawIndex(requestCdf, random());
          const template = scenario.requests[index]!;
          const adapter = adapterIds.length > 0 ? adapterIds[drawIndex(adapterCdf, random())] : undefined;
          context.template = index;
          return {
            ...request,
            method: template.method,
            path: template.path,
            headers: { 'content-type': 'application/json' },
            body: expandBody(template.body, { ...vars, adapter }),
          };
        },
        onResponse: (status, body, context: ConnectionContext, headers) => {
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status >= 300) return;
          completionTokens += tokensIn(body);
          if (!consistency) return;
          const name = Object.keys(headers ?? {}).find((k) => k.toLowerCase() === consistency.header);
          const value = name === undefined ? undefined : headers![name];
          consistency.record(context.template ?? -1, Array.isArray(value) ? value.join(',') : value, answerText(body));
        },
      },
    ],
  };
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (err: Error | null, res: autocannon.Result) => (err ? reject(err) : resolve(res)));
    instance.on('response', (_client, _status, _bytes, responseTime) => latencies.push(responseTime));
    instance.on('reqError', (err: Error) => transportErrors.set(err.message, (transportErrors.get(err.message) ?? 0) + 1));
  });
  if (transportErrors.size > 0) process.stdout.write(`  transport errors: ${[...transportErrors].map(([m, n]) => `${m} ×${n}`).join('; ')}\n`);
  return summarize({ result, latencies, statuses, completionTokens, seconds });
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { duration: { type: 'string' }, url: { type: 'string' } },
  });
  if (positionals.length !== 1) usage('name exactly one scenario (loadtest/scenarios/<name>.json)');
  const scenario = await loadScenario(positionals[0]!).catch((err: Error) => usage(err.message));
  const seconds = values.duration === undefined ? scenario.duration : Number(values.duration);
  if (!Number.isFinite(seconds) || seconds <= 0) usage(`--duration must be a positive number of seconds, not ${values.duration}`);

  let server: ServerProcess | undefined;
  let adapterIds: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const adminToken = process.env['PATCHBAY_ADMIN_TOKEN'] ?? randomBytes(16).toString('hex');
  try {
    let url = values.url;
    if (!url) {
      // A fresh data directory: merges and edits of an earlier run must not leak into this one.
      const dataDir = await mkdtemp(join(tmpdir(), 'patchbay-load-data-'));
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      const env: Record<string, string> = { PATCHBAY_DATA_DIR: dataDir, ...scenario.server.env, PATCHBAY_ADMIN_TOKEN: adminToken };
      if (scenario.adapterCopies) {
        const copies = await copyAdapters(scenario.adapterCopies);
        env['PATCHBAY_ADAPTER_DIR'] = copies.dir;
        adapterIds = copies.ids;
        cleanups.push(copies.remove);
      }
      server = await startServer(env);
      url = server.url;
    } else if (scenario.adapterCopies) {
      usage(`scenario ${scenario.name} creates its own adapters; run it without --url`);
    }
    process.stdout.write(`loadtest ${scenario.name}: ${scenario.description}\n  ${scenario.connections} connections, ${seconds} s, ${url}\n`);
    const admin = new AdminClient(url, adminToken);
    const vars: Vars = { base: await baseModelId(url), ...(await admin.discover(scenario.admin?.discover ?? {})) };
    for (const call of scenario.admin?.setup ?? []) await admin.call(call, vars);
    const consistency = scenario.consistentBy ? new ConsistencyCheck(scenario.consistentBy.toLowerCase()) : undefined;
    const during = startDuring(admin, scenario, vars);
    const summary = await run(scenario, url, vars, adapterIds, seconds, consistency);
    const adminDuring = await during.stop();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const watched = Object.keys(scenario.thresholds.metricsAtLeast);
    if (watched.length > 0) summary.lines.push(`  ${watched.map((m) => `${m} ${metricTotal(metrics, m) ?? 'absent'}`).join(', ')}`);
    const failures = judge(summary, scenario.thresholds, metrics);
    if (scenario.admin?.during) {
      summary.lines.push(`  admin calls during the load: ${adminDuring.calls}`);
      if (adminDuring.error) failures.push(`an admin call failed: ${adminDuring.error.message}`);
      if (adminDuring.calls === 0) failures.push('no admin call completed during the load');
    }
    if (consistency) {
      const { values: seen, torn } = consistency.verdict();
      summary.lines.push(`  ${consistency.header}: ${seen} distinct value(s), ${torn.length} torn group(s)`);
      failures.push(...torn.map((t) => `torn output: ${t}`));
    }
    process.stdout.write(`${summary.lines.join('\n')}\n  machine: ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)} (1 min) at the end\n`);
    for (const f of failures) process.stdout.write(`THRESHOLD FAILED: ${f}\n`);
    process.stdout.write(failures.length === 0 ? `loadtest ${scenario.name}: all thresholds met\n` : '');
    process.exitCode = failures.length === 0 ? 0 : 1;
  } finally {
    await server?.stop();
    for (const cleanup of cleanups) await cleanup();
  }
}

await main().catch((err: Error) => {
  process.stderr.write(`loadtest: ${err.message}\n`);
  process.exitCode = 1;
});
