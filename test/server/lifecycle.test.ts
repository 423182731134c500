/**
 * The real process (`node --import tsx src/main.ts`) over a real socket: graceful drain on SIGTERM and
 * cancellation when a client disconnects mid-stream.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { MODEL_ID, metricValue, parseSSE } from './helpers.ts';
import { startMain } from './main-process.ts';

interface Child {
  proc: ChildProcess;
  base: string;
  exited: Promise<number | null>;
  output: () => string;
}

const children: Child[] = [];
after(() => {
  for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startServer(): Promise<Child> {
  const server = await startMain({ PATCHBAY_LOG_LEVEL: 'info' });
  const exited = once(server.proc, 'exit').then(([code]) => code as number | null);
  const child: Child = { proc: server.proc, base: server.base, exited, output: server.log };
  children.push(child);
  return child;
}

const longStream = {
  model: MODEL_ID,
  prompt: 'Once upon a time there was a little',
  max_tokens: 200,
  temperature: 1,
  seed: 11,
  stream: true,
};

function postJson(base: string, route: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${base}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

test('SIGTERM drains: the open stream completes with [DONE], new work is refused, exit 0', async () => {
  const child = await startServer();
  const res = await postJson(child.base, '/v1/completions', longStream);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const first = await reader.read();
  text += decoder.decode(first.value, { stream: true });

  child.proc.kill('SIGTERM');
  // Readiness drops first (503), or the listener is already gone once the drain finished.
  let ready = 200;
  for (let i = 0; i < 100 && ready === 200; i++) {
    ready = await fetch(`${child.base}/readyz`).then((r) => r.status, () => 0);
    if (ready === 200) await sleep(20);
  }
  assert.notEqual(ready, 200, 'readyz stops saying ready after SIGTERM');
  const late = await postJson(child.base, '/v1/completions', { ...longStream, stream: false, max_tokens: 2 }).then(
    (r) => r.status,
    () => 'refused',
  );
  assert.ok(late === 503 || late === 'refused', `a request during the drain gets 503 or no connection, got ${late}`);

  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  const { chunks, done } = parseSSE(text);
  assert.ok(done, `stream ended with [DONE]:\n${text.slice(-300)}`);
  const last = chunks.at(-1) as { choices: { finish_reason: string | null }[] };
  assert.ok(['stop', 'length'].includes(last.choices[0]!.finish_reason ?? ''));
  assert.equal(await child.exited, 0, child.output());
  assert.match(child.output(), /"msg":"stopped"/);
});

test('a client that disconnects mid-stream: its sequence leaves the batch', async () => {
  const child = await startServer();
  const abort = new AbortController();
  const res = await postJson(child.base, '/v1/completions', longStream, abort.signal);
  const reader = res.body!.getReader();
  await reader.read();
  abort.abort();

  let cancelled = 0;
  let active = -1;
  let completionTokens = 0;
  for (let i = 0; i < 200 && (cancelled < 1 || active !== 0); i++) {
    await sleep(25);
    const metrics = await (await fetch(`${child.base}/metrics`)).text();
    cancelled = metricValue(metrics, 'patchbay_sequences_cancelled_total', { model: MODEL_ID }) ?? 0;
    active = metricValue(metrics, 'patchbay_active_sequences') ?? -1;
    completionTokens = metricValue(metrics, 'patchbay_completion_tokens_total', { model: MODEL_ID }) ?? 0;
  }
  assert.equal(cancelled, 1, 'the cancelled-sequences counter counted it');
  assert.equal(active, 0, 'no sequence is left in the batch');
  assert.ok(completionTokens < longStream.max_tokens, `it stopped early (${completionTokens} tokens)`);

  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0, child.output());
});
