import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../../src/server/app.ts';
import { createLogger } from '../../src/server/logging.ts';
import { ServerMetrics } from '../../src/server/metrics.ts';
import { createBaseResolver } from '../../src/server/resolver.ts';
import { ServingState } from '../../src/server/state.ts';
import { EditService } from '../../src/edits/edit-service.ts';
import type { SearchHost } from '../../src/edits/search-host.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { MAX_STREAM_LINE_BYTES } from '../../src/server/routes/admin-edits.ts';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';
import { MODEL_DIR, post } from './helpers.ts';

/** The edit routes on the real runtime and the real EditService (tiny GPT-2, a fresh data directory). */
const TOKEN = 'edit-secret';
const auth = { headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` } };
let runtime: Runtime;
let edits: EditService;
let app: ReturnType<typeof createApp>;
const dataDir = mkdtempSync(join(tmpdir(), 'edits-api-'));

before(async () => {
  const state = new ServingState();
  app = createApp({ state, metrics: new ServerMetrics(), logger: createLogger('silent'), maxBodyBytes: 1 << 20, adminToken: TOKEN });
  runtime = await loadRuntime({ modelDir: MODEL_DIR, device: 'cpu', maxBatch: 8, maxQueue: 64, threads: 1 });
  edits = await EditService.create({ model: runtime.model, tokenizer: runtime.tokenizer, versions: runtime.versions, dataDir, settings: DEFAULT_EDIT_SETTINGS, device: 'cpu', threads: 1 });
  const { model } = runtime;
  state.markReady({ runtime, resolver: createBaseResolver({ id: model.id, contextLength: model.contextLength, created: 1 }), edits });
});
after(async () => {
  await edits.close();
  await runtime.close();
});

async function ask(prompt: string): Promise<{ text: string; seq: string | null }> {
  const res = await post(app, '/v1/completions', { model: 'tiny-gpt2', prompt, max_tokens: 4, temperature: 0 });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { choices: { text: string }[] };
  return { text: body.choices[0]!.text, seq: res.headers.get('x-patchbay-edit-seq') };
}

test('an edit changes the greedy answer from its ack on; rollback restores it; bad edits change nothing', async () => {
  const p = 'The capital of Veldor is';
  const before = await ask(p);
  assert.equal(before.seq, '0');
  const unrelated = await ask('Queen Amara was born in');

  const res = await post(app, '/admin/edits', { edits: [{ prompt: p, target: ' Quillon' }] }, auth);
  assert.equal(res.status, 200);
  const ack = (await res.json()) as { seq: number };
  assert.equal(ack.seq, 1);
  const afterEdit = await ask(p);
  assert.ok(afterEdit.text.startsWith(' Quillon'), afterEdit.text);
  assert.equal(afterEdit.seq, '1');
  assert.equal((await ask('Queen Amara was born in')).text, unrelated.text);

  const hash = edits.stateHash;
  const bad: [unknown, number, string][] = [
    [{ edits: [{ prompt: '', target: ' X' }] }, 400, 'invalid_edit'],
    [{ edits: [{ prompt: 'A', target: '' }] }, 400, 'target_empty'],
    [{ edits: [{ prompt: 'x'.repeat(5000), target: ' X' }] }, 400, 'too_long'],
    [{ edits: [{ prompt: 'The capital of Veldor is', target: ' X', subject: 'Nowhere' }] }, 400, 'subject_not_found'],
    [{ edits: [{ layer: 'transformer.h.0.attn.c_attn', keys: [[1]], values: [[1]] }] }, 400, 'unknown_layer'],
    [{ edits: [{ layer: 'transformer.h.1.mlp.c_proj', keys: [[1, 2]], values: [[1]] }] }, 400, 'shape_mismatch'],
    [{ edits: [] }, 400, 'invalid_value'],
    ['{"edits": [{"prompt": "a", "target": " b", "layer": "x"}]}', 400, 'invalid_value'],
  ];
  for (const [body, status, code] of bad) {
    const r = await post(app, '/admin/edits', body, auth);
    const err = (await r.json()) as { error: { code: string } };
    assert.equal(r.status, status, JSON.stringify(body).slice(0, 80));
    assert.equal(err.error.code, code, JSON.stringify(body).slice(0, 80));
  }
  assert.equal(edits.stateHash, hash, 'rejected edits changed the state');
  assert.equal(edits.seq, 1);
  assert.equal((await post(app, '/admin/edits', { edits: [{ prompt: p, target: ' Q' }] }, { headers: { 'content-type': 'application/json' } })).status, 401);

  const list = (await (await app.request('/admin/edits', auth)).json()) as { seq: number; count: number; layers: { name: string }[]; settings: { mu: number } };
  assert.equal(list.seq, 1);
  assert.equal(list.count, 1);
  // The defaults ship with the statistics: the layers they cover and the μ they record (tiny-gpt2: 0 and 1, μ = 10).
  assert.deepEqual(list.layers.map((l) => l.name), ['transformer.h.0.mlp.c_proj', 'transformer.h.1.mlp.c_proj']);
  assert.equal(list.settings.mu, 10);

  assert.equal((await post(app, '/admin/edits/rollback', { seq: 7 }, auth)).status, 404);
  const rb = await post(app, '/admin/edits/rollback', { seq: 0 }, auth);
  assert.equal(rb.status, 200);
  const rolled = await ask(p);
  assert.equal(rolled.text, before.text);
  assert.equal(rolled.seq, '0');
});

test('the NDJSON stream acks each line, names malformed lines, and ends with a summary', async () => {
  const lines = [
    JSON.stringify({ prompt: 'The capital of Veldor is', target: ' Lumen' }),
    '{not json',
    JSON.stringify({ prompt: 'Queen Amara was born in', target: '' }),
    '',
    JSON.stringify({ prompt: 'Queen Amara was born in', target: ' Veldor' }),
  ].join('\n');
  const res = await app.request('/admin/edits/stream', { method: 'POST', body: lines, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' } });
  assert.equal(res.status, 200);
  const out = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const byLine = (n: number) => out.filter((o) => o['line'] === n);
  assert.equal(byLine(1)[0]!['status'], 'durable');
  assert.match((byLine(2)[0]!['error'] as { message: string }).message, /^line 2: /);
  assert.equal((byLine(3)[0]!['error'] as { code: string }).code, 'target_empty');
  assert.equal(byLine(5)[0]!['status'], 'durable');
  const done = out.at(-1)!;
  assert.equal(done['done'], true);
  assert.equal(done['accepted'], 2);
  assert.equal(done['rejected'], 2);
  assert.ok(out.some((o) => o['visible'] !== undefined), 'a visibility event was sent');
  assert.ok((await ask('The capital of Veldor is')).text.startsWith(' Lumen'));
  assert.equal((await ask('The capital of Veldor is')).seq, String(done['seq']));
});

/** A request body the test feeds while reading the response (a live NDJSON stream). */
function liveBody(): { body: ReadableStream<Uint8Array>; push: (s: string) => void; close: () => void } {
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctrl = c) });
  return { body, push: (s) => ctrl.enqueue(new TextEncoder().encode(s)), close: () => ctrl.close() };
}

async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, seen: string[], pred: (o: Record<string, unknown>) => boolean): Promise<void> {
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended before the expected line; got ${seen.join(' | ')}`);
    buf += decoder.decode(value, { stream: true });
    let nl: number;
    let hit = false;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      seen.push(line);
      if (pred(JSON.parse(line) as Record<string, unknown>)) hit = true;
    }
    if (hit) return;
  }
}

test('the stream route acknowledges a line while the request body is still open', { timeout: 180_000 }, async () => {
  const { body, push, close } = liveBody();
  push(`${JSON.stringify({ prompt: 'Dacam works as a', target: ' baker', subject: 'Dacam' })}\n`);
  const res = await app.request('/admin/edits/stream', { method: 'POST', body, duplex: 'half', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' } } as RequestInit);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const seen: string[] = [];
  // Before the fix the global body limit buffered the chunked body to its end: this read never finished.
  await readUntil(reader, seen, (o) => o['line'] === 1 && o['status'] === 'durable');
  push('x'.repeat(MAX_STREAM_LINE_BYTES + 1));
  await readUntil(reader, seen, (o) => o['done'] === true);
  // The server stopped reading at the long line and cancelled the body; closing it again is harmless.
  try {
    close();
  } catch {
    // already cancelled by the server
  }
  const out = seen.map((l) => JSON.parse(l) as Record<string, unknown>);
  const tooLong = out.find((o) => o['line'] === 2)!;
  assert.equal((tooLong['error'] as { code: string }).code, 'request_too_large');
  assert.deepEqual({ accepted: out.at(-1)!['accepted'], rejected: out.at(-1)!['rejected'] }, { accepted: 1, rejected: 1 });
});

test('a search worker that dies mid-edit answers 500 search_failed, changes nothing, and the next edit works', async () => {
  const host = edits.search as SearchHost;
  const hash = edits.stateHash;
  const seq = edits.seq;
  const pending = post(app, '/admin/edits', { edits: [{ prompt: 'Queen Amara was born in', target: ' Ostia' }] }, auth);
  // Mid-search: the probe runs (ORT calls) are done, the Adam loop runs (terminating under an ORT call aborts the process).
  for (let i = 0; !host.searching; i++) {
    assert.ok(i < 60_000, 'the value search never started');
    await new Promise((r) => setTimeout(r, 1));
  }
  await host.terminate();
  const res = await pending;
  assert.equal(res.status, 500);
  const body = (await res.json()) as { error: { code: string; type: string; message: string } };
  assert.equal(body.error.code, 'search_failed');
  assert.match(body.error.message, /worker failed.*nothing changed/);
  assert.equal(edits.stateHash, hash);
  assert.equal(edits.seq, seq);
  const again = await post(app, '/admin/edits', { edits: [{ prompt: 'Queen Amara was born in', target: ' Ostia' }] }, auth);
  assert.equal(again.status, 200);
  assert.equal(((await again.json()) as { seq: number }).seq > seq, true);
});
