/**
 * npm run bench:edits — knowledge-edit costs on the embedded model.
 *  1. Latency of edit #10, #1000 and #10000 of one stream (raw edits, u = 1 key per layer, both edited layers
 *     at their real sizes d_k = 1024, d_v = 256; commit = validate + log append + fsync + Woodbury step):
 *     the per-edit cost must not grow with history (goal: #10000 / #10 ≤ 1.2).
 *  2. A server in its own process: closed-loop completions (4 clients, greedy, 32 tokens) alone, then with an
 *     NDJSON stream of prompt edits running, then alone again: tokens/s, the slowdown, edits/s sustained and
 *     ack → visible latency (coalesced publishes).
 *  3. Publishing: a full version build (what BaseVersions does) vs keeping the edited layers as fed graph
 *     inputs (no build at all, but every step pays for un-prepacked weights): decode step time of both.
 * Figures depend on the machine (2 shared cores here, other jobs running); ratios are measured side by side.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LayerEdit } from '../src/edits/edit-state.ts';
import { EditStore } from '../src/edits/edit-store.ts';
import { BatchKv } from '../src/runtime/batch-kv.ts';
import { Engine } from '../src/runtime/engine.ts';
import { readModelInfo } from '../src/runtime/model-config.ts';
import { createSession } from '../src/runtime/session.ts';
import { editStream as factStream, loadFacts } from './lib/edit-facts.ts';
import { streamEdits } from './lib/ndjson-stream.ts';
import { startServer } from './lib/server-process.ts';
import { median } from './lib/stats.ts';
import { weightFeeds, weightsAsInputs } from './lib/weights-as-inputs.ts';
import { editLayerSpecs } from './lib/edit-specs.ts';

const { values: args } = parseArgs({ options: { stream: { type: 'string', default: '10000' }, seconds: { type: 'string', default: '20' }, skip: { type: 'string', default: '' } } });
const skip = new Set(args.skip!.split(','));
const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
const bytes = new Uint8Array(readFileSync('models/tiny-gpt2/onnx/model.onnx'));
const { table, specs } = editLayerSpecs(bytes);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
}

// 1. One long stream.
if (!skip.has('stream')) {
  const n = Number(args.stream);
  const dir = mkdtempSync(join(tmpdir(), 'bench-edits-'));
  const store = await EditStore.open({ dir, specs, lambda: 1, mu: 1, fingerprint: 'bench', snapshotEvery: 250, keepSnapshots: 2 });
  const r = rng(5);
  const ms: number[] = [];
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) {
    const parts: LayerEdit[] = specs.map((s) => ({ layer: s.name, u: 1, keys: Float64Array.from({ length: s.dK }, () => Math.abs(r())), values: Float64Array.from({ length: s.dV }, r) }));
    const s0 = performance.now();
    store.commit(parts, { source: 'raw' });
    ms.push(performance.now() - s0);
  }
  const total = (performance.now() - t0) / 1000;
  // Window of 11 edits around each mark, leaving out the snapshot writes (every 250th edit), reported apart.
  const around = (k: number) => ms.slice(Math.max(0, k - 6), Math.min(n, k + 5)).filter((_, j) => (Math.max(0, k - 6) + j + 1) % 250 !== 0);
  const marks = [10, 1000, 10000].filter((k) => k <= n);
  console.log(`1. one stream of ${n} raw edits (u = 1 per layer, ${specs.map((s) => `${s.name} ${s.dK}×${s.dV}`).join(', ')}), commit incl. fsync`);
  for (const k of marks) console.log(`   edit #${k}: median ${median(around(k)).toFixed(2)} ms (${range(around(k))}) over edits ${k - 5}…${k + 5}`);
  const first = median(around(marks[0]!));
  const last = median(around(marks.at(-1)!));
  console.log(`   #${marks.at(-1)} / #${marks[0]} = ${(last / first).toFixed(2)} (goal ≤ 1.2); snapshot edits (every 250th) median ${median(ms.filter((_, j) => (j + 1) % 250 === 0)).toFixed(1)} ms; ${(n / total).toFixed(1)} edits/s overall; log ${(store.stats().logBytes / 2 ** 20).toFixed(1)} MiB\n`);
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

// 2. Serving while an edit stream runs.
if (!skip.has('serve')) {
  const data = mkdtempSync(join(tmpdir(), 'bench-edits-serve-'));
  const server = await startServer({ PATCHBAY_ADMIN_TOKEN: 'bench', PATCHBAY_DATA_DIR: data, PATCHBAY_THREADS: '1' });
  const seconds = Number(args.seconds);
  const load = async (ms: number) => {
    let tokens = 0;
    const end = performance.now() + ms;
    await Promise.all(
      Array.from({ length: 4 }, async (_, c) => {
        while (performance.now() < end) {
          const res = await fetch(`${server.url}/v1/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'tiny-gpt2', prompt: `ROMEO.\nWhat say you, ${c}?`, max_tokens: 32, temperature: 0, ignore_eos: true }),
          });
          const body = (await res.json()) as { usage: { completion_tokens: number } };
          tokens += body.usage.completion_tokens;
        }
      }),
    );
    return tokens / (ms / 1000);
  };
  const editStream = async (ms: number) => {
    // The counterfactual stream of eval:edits (prompt, target, subject), as NDJSON lines.
    const lines = factStream(loadFacts(), 1000).edits.map((e) => JSON.stringify({ prompt: e.prompt, target: e.target, subject: e.subject }));
    const r = await streamEdits(server.url, 'bench', lines, ms);
    const out = r.events;
    const acks = out.filter((o) => o['status'] === 'durable');
    const visible = out.filter((o) => o['visible'] !== undefined).map((o) => (o['visible'] as { ms: number }).ms);
    return { edits: acks.length, perSecond: acks.length / (r.ms / 1000), ackMs: acks.map((a) => a['ack_ms'] as number), visible, sent: r.sent, errors: out.filter((o) => o['error'] !== undefined).length };
  };
  const alone1 = await load(seconds * 1000);
  const [during, edits] = await Promise.all([load(seconds * 1000), editStream(seconds * 1000)]);
  const alone2 = await load(seconds * 1000);
  const alone = (alone1 + alone2) / 2;
  const status = (await (await fetch(`${server.url}/admin/edits`, { headers: { authorization: 'Bearer bench' } })).json()) as { stats: { publishes: number; last_publish: { buildMs: number } | null } };
  console.log('2. serving (4 closed-loop clients, greedy, 32 tokens each) with and without an NDJSON edit stream');
  console.log(`   alone ${alone1.toFixed(1)} and ${alone2.toFixed(1)} tokens/s; during the stream ${during.toFixed(1)} tokens/s (${((1 - during / alone) * 100).toFixed(0)} % slower)`);
  console.log(`   edits: ${edits.sent} lines sent, ${edits.edits} acknowledged durable, ${edits.errors} errors = ${edits.perSecond.toFixed(2)} edits/s; ack (compute + fsync) median ${median(edits.ackMs).toFixed(0)} ms (${range(edits.ackMs)})`);
  console.log(`   publishes: ${status.stats.publishes} versions for ${edits.edits} edits (coalesced); ack → visible median ${median(edits.visible).toFixed(0)} ms (${range(edits.visible)}); last version build ${status.stats.last_publish?.buildMs.toFixed(0) ?? "–"} ms\n`);
  await server.stop();
  rmSync(data, { recursive: true, force: true });
}

// 3. Publishing: edited layers fed as inputs vs constants (a rebuilt version).
if (!skip.has('publish')) {
  const info = await readModelInfo('models/tiny-gpt2');
  const constant = new Engine({ session: await createSession(bytes, { device: 'cpu', threads: 1 }), shape: info, vocabSize: info.vocabSize, baseVersion: 0 });
  const fed = new Engine({ session: await createSession(weightsAsInputs(bytes, specs.map((s) => s.initializer)), { device: 'cpu', threads: 1 }), shape: info, vocabSize: info.vocabSize, baseVersion: 0 });
  const feeds = weightFeeds(new Map(specs.map((s) => [s.initializer, { data: s.w0, dims: [s.dK, s.dV] }])));
  const prompt = Array.from({ length: 24 }, (_, i) => 100 + i);
  const step = async (e: Engine, batch: number, f: Record<string, import('onnxruntime-node').Tensor> | undefined) => {
    const ids = Array.from({ length: batch }, () => prompt);
    let { kv } = await e.forward(BatchKv.empty(e.shape, batch), ids, f);
    const ms: number[] = [];
    for (let s = 0; s < 20; s++) {
      const t0 = performance.now();
      ({ kv } = await e.forward(kv, ids.map(() => [42]), f));
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const builds: number[] = [];
  const res: Record<string, number[]> = {};
  for (let trial = 0; trial < 3; trial++) {
    const t0 = performance.now();
    const s = await createSession(table.patched(new Map(specs.map((sp) => [sp.initializer, sp.w0]))), { device: 'cpu', threads: 1 });
    builds.push(performance.now() - t0);
    await s.release();
    for (const batch of [1, 8]) {
      (res[`constant|${batch}`] ??= []).push(await step(constant, batch, undefined));
      (res[`fed|${batch}`] ??= []).push(await step(fed, batch, feeds));
    }
  }
  console.log('3. publishing an edit: rebuild a version (constant weights) vs edited layers fed as graph inputs');
  console.log(`   full session build from patched bytes: median ${median(builds).toFixed(0)} ms (${range(builds)}) per publish`);
  for (const batch of [1, 8]) {
    const c = median(res[`constant|${batch}`]!);
    const f = median(res[`fed|${batch}`]!);
    console.log(`   decode step, batch ${batch}: constant ${c.toFixed(2)} ms (${range(res[`constant|${batch}`]!)}), 2 layers fed ${f.toFixed(2)} ms (${range(res[`fed|${batch}`]!)}) → ×${(f / c).toFixed(2)}`);
  }
}
