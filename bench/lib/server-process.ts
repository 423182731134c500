import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** A Patchbay server in a child process, so the benchmark's client never shares its event loop. */
export interface ServerProcess {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * `cwd`: the checkout whose `src/main.ts` runs (default: this one), e.g. an older commit to compare against.
 * `readyMs`: how long to wait for /readyz (an imported model plus the edit state's first C₀ takes minutes here).
 */
export async function startServer(env: Record<string, string>, cwd?: string, readyMs = 120_000): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    ...(cwd ? { cwd } : {}),
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PATCHBAY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server did not become ready in ${readyMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export interface CompletionTiming {
  ms: number;
  completionTokens: number;
  text: string;
}

export async function timeCompletion(url: string, body: Record<string, unknown>): Promise<CompletionTiming> {
  const started = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { usage?: { completion_tokens: number }; choices?: Array<{ text: string }>; error?: unknown };
  if (!res.ok || !json.usage || !json.choices) throw new Error(`completion failed: ${res.status} ${JSON.stringify(json)}`);
  return { ms: performance.now() - started, completionTokens: json.usage.completion_tokens, text: json.choices[0]!.text };
}
