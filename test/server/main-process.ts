/**
 * `src/main.ts` in a child process on a free port, for tests of the real process wiring (signals, restarts,
 * listeners). Its stdout and stderr are kept so a test can assert on what an operator would read.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../bench/lib/server-process.ts';
import { REPO_ROOT } from './helpers.ts';

export interface MainProcess {
  base: string;
  proc: ChildProcess;
  log(): string;
  /** SIGTERM, resolved once the process has exited. */
  stop(): Promise<void>;
}

/**
 * Polls /readyz every 100 ms, `readyTries` times; a process that exits or never gets ready is killed and its output thrown.
 * Without PATCHBAY_DATA_DIR in `env` the process gets a fresh one: the checkout's `data/` would carry edit logs
 * and registrations from earlier runs (written under other settings) into this one.
 */
export async function startMain(env: Record<string, string>, readyTries = 300): Promise<MainProcess> {
  const port = await freePort();
  const dataDir = env.PATCHBAY_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'patchbay-data-'));
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PATCHBAY_THREADS: '1', PATCHBAY_DATA_DIR: dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < readyTries; i++) {
    if (proc.exitCode !== null) throw new Error(`exited early:\n${out}`);
    if ((await fetch(`${base}/readyz`).then((r) => r.status, () => 0)) === 200) {
      return {
        base,
        proc,
        log: () => out,
        async stop() {
          const exited = once(proc, 'exit');
          proc.kill('SIGTERM');
          await exited;
          if (env.PATCHBAY_DATA_DIR === undefined) rmSync(dataDir, { recursive: true, force: true });
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`never ready:\n${out}`);
}
