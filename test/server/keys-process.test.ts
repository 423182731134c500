/**
 * main.ts wiring of keys mode over real sockets: PATCHBAY_KEYS_FILE switches it on (logged), SIGHUP reloads
 * the file, PATCHBAY_METRICS_PORT moves /metrics to its own listener; without a keys file, open mode is logged.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { hashKey } from '../../src/server/tenants/keys-file.ts';
import { freePort } from '../../bench/lib/server-process.ts';
import { startMain, type MainProcess } from './main-process.ts';

const scratch = mkdtempSync(path.join(tmpdir(), 'patchbay-keys-'));
const procs: ChildProcess[] = [];
after(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

async function start(env: Record<string, string>): Promise<MainProcess> {
  const server = await startMain(env);
  procs.push(server.proc);
  return server;
}

const models = (base: string, key?: string) => fetch(`${base}/v1/models`, key ? { headers: { authorization: `Bearer ${key}` } } : {});

test('keys mode from PATCHBAY_KEYS_FILE, SIGHUP reload, /metrics on its own listener', { timeout: 120_000 }, async () => {
  const file = path.join(scratch, 'keys.json');
  const write = (key: string) => writeFileSync(file, JSON.stringify({ tenants: [{ name: 'acme', keys: [`sha256:${hashKey(key)}`], adapters: [] }] }));
  write('sk-one');
  const metricsPort = await freePort();
  const { base, proc, log } = await start({ PATCHBAY_KEYS_FILE: file, PATCHBAY_METRICS_PORT: String(metricsPort) });
  assert.match(log(), /keys mode/);
  assert.equal((await models(base)).status, 401);
  assert.equal((await models(base, 'sk-one')).status, 200);
  assert.equal((await fetch(`${base}/metrics`)).status, 404, 'not on the public port');
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status, 200);
  write('sk-two');
  proc.kill('SIGHUP');
  for (let i = 0; i < 50 && (await models(base, 'sk-two')).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await models(base, 'sk-two')).status, 200);
  assert.equal((await models(base, 'sk-one')).status, 401);
  proc.kill('SIGTERM');
  assert.equal((await once(proc, 'exit'))[0], 0);
});

test('without a keys file the server says it is in open mode', { timeout: 120_000 }, async () => {
  const { base, proc, log } = await start({});
  assert.match(log(), /open mode/);
  assert.equal((await models(base)).status, 200);
  proc.kill('SIGTERM');
  await once(proc, 'exit');
});
