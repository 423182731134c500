/**
 * Serving while an NDJSON prompt-edit stream runs (bench:edits part 2): one server process, closed-loop
 * completions alone, then together with the edit stream, then alone again.
 */
import { loadavg } from 'node:os';
import { editStream as factStream, loadFacts } from './edit-facts.ts';
import { streamEdits } from './ndjson-stream.ts';

export interface ServeDuringStream {
  /** tokens/s before and after the stream, and while it ran. */
  alone: [number, number];
  during: number;
  /** Lines sent, acknowledged durable, rejected; acks per second over the stream's whole request. */
  sent: number;
  acked: number;
  errors: number;
  editsPerSecond: number;
  /** Per ack: line sent → durable ack (client side), and the server's own split (compute, durable = log + fsync + RLS step). */
  ackMs: number[];
  computeMs: number[];
  durableMs: number[];
  /** Each visibility event: edits known → a version serving them. */
  visibleMs: number[];
  /** 1-minute load average at the start and end of the stream phase. */
  load: [number, number];
}

/**
 * `clients` closed-loop completion clients (greedy, `maxTokens` each, ignore_eos) starting requests for `ms`;
 * tokens/s over the time until the last one answered (a server that stalls past the window is charged for it).
 */
async function completions(url: string, model: string, ms: number, clients: number, maxTokens: number): Promise<number> {
  let tokens = 0;
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      while (performance.now() < end) {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, prompt: `ROMEO.\nWhat say you, ${c}?`, max_tokens: maxTokens, temperature: 0, ignore_eos: true }),
        });
        const body = (await res.json()) as { usage: { completion_tokens: number } };
        tokens += body.usage.completion_tokens;
      }
    }),
  );
  return tokens / ((performance.now() - start) / 1000);
}

export async function serveDuringStream(url: string, token: string, seconds: number, clients = 4, maxTokens = 32): Promise<ServeDuringStream> {
  const model = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data[0]!.id;
  const ms = seconds * 1000;
  // Untimed warm-up: right after /readyz the process still JIT-compiles and starts its spare session worker;
  // the first 6 s ran at ~1/3 of the next windows' throughput with the worker on and off alike (BENCHMARKS).
  await completions(url, model, 10_000, clients, maxTokens);
  const alone1 = await completions(url, model, ms, clients, maxTokens);
  // The counterfactual stream of eval:edits (prompt, target, subject), as NDJSON lines.
  const lines = factStream(loadFacts(), 1000).edits.map((e) => JSON.stringify({ prompt: e.prompt, target: e.target, subject: e.subject }));
  const load0 = loadavg()[0]!;
  const [during, r] = await Promise.all([completions(url, model, ms, clients, maxTokens), streamEdits(url, token, lines, ms)]);
  const load1 = loadavg()[0]!;
  const alone2 = await completions(url, model, ms, clients, maxTokens);
  const acks = r.events.filter((o) => o['status'] === 'durable');
  const split = (k: 'compute' | 'durable') => acks.map((a) => (a['ms'] as Record<string, number>)[k]!);
  return {
    alone: [alone1, alone2],
    during,
    sent: r.sent,
    acked: acks.length,
    errors: r.events.filter((o) => o['error'] !== undefined).length,
    editsPerSecond: acks.length / (r.ms / 1000),
    ackMs: acks.map((a) => a['ack_ms'] as number),
    computeMs: split('compute'),
    durableMs: split('durable'),
    visibleMs: r.events.filter((o) => o['visible'] !== undefined).map((o) => (o['visible'] as { ms: number }).ms),
    load: [load0, load1],
  };
}
