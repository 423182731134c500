/**
 * The production build: `tsc -p tsconfig.build.json` compiles src/ to JavaScript that plain `node` runs
 * (no tsx), reading the model and adapters relative to the repository as `npm start` does.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { findRepoRoot } from '../../src/config.ts';
import { REPO_ROOT } from '../server/helpers.ts';
import { freePort } from '../../bench/lib/server-process.ts';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const scratch = mkdtempSync(path.join(tmpdir(), 'patchbay-build-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

test('findRepoRoot finds package.json above src/ and above dist/src/', () => {
  assert.equal(findRepoRoot(path.join(REPO_ROOT, 'src')), REPO_ROOT.replace(/\/$/, ''));
  assert.equal(findRepoRoot(path.join(REPO_ROOT, 'dist', 'src')), REPO_ROOT.replace(/\/$/, ''));
});

test('npm run build output runs under plain node and serves a completion', { timeout: 240_000 }, async () => {
  // A copy of the repo's layout in a scratch dir: compiled dist/ plus links to what the server reads at run time.
  const out = path.join(scratch, 'dist');
  const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(process.execPath, [tsc, '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', out], { cwd: REPO_ROOT });
  const main = path.join(out, 'src', 'main.js');
  assert.ok(existsSync(main), 'dist/src/main.js was emitted');
  for (const link of ['package.json', 'node_modules', 'models', 'adapters']) symlinkSync(path.join(REPO_ROOT, link), path.join(scratch, link));

  const port = await freePort();
  // No --import tsx: this is what `npm run start:prod` and the container image run.
  const proc = spawn(process.execPath, [main], {
    cwd: tmpdir(),
    // Sessions in worker threads (session-host.ts): the compiled session-worker.js must start under plain node.
    env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1', PATCHBAY_THREADS: '1', PATCHBAY_SESSION_WORKERS: 'all', PATCHBAY_DATA_DIR: path.join(scratch, 'data') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  try {
    const base = `http://127.0.0.1:${port}`;
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      assert.equal(proc.exitCode, null, `server exited early:\n${log}`);
      ready = (await fetch(`${base}/readyz`).then((r) => r.status, () => 0)) === 200;
      if (!ready) await sleep(100);
    }
    assert.ok(ready, `never ready:\n${log}`);
    assert.match(log, new RegExp(`"modelDir":"${scratch}/models/tiny-gpt2"`), 'the default model is found next to dist/, not inside it');
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'lora-comedy', prompt: 'ROMEO.', max_tokens: 4, temperature: 0 }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const body = (await res.json()) as { usage: { completion_tokens: number } };
    assert.ok(body.usage.completion_tokens > 0);
  } finally {
    proc.kill('SIGTERM');
    await once(proc, 'exit');
  }
});
