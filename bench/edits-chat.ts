/**
 * The real-model edit stream: real-world counterfactual edits (tools/edits/real_counterfactuals.json, e.g.
 * "The capital of France is" → " Lyon") posted one at a time to a Patchbay server running an imported chat
 * model (SmolLM2-135M-Instruct, f32 import), each then asked through /v1/chat/completions as a user would
 * ("What is the capital of France?", greedy, chat template applied by the server).
 *   success right after  the answer to edit i's question names the target right after edit i's ack
 *   retention            the first 10 % of the edits' questions still name their targets at the end
 *   held at end          every edit's question at the end
 *   paraphrase           a reworded question ("Tell me the name of the capital city of France.") at the end
 *   preservation         share of unrelated questions whose greedy answer is unchanged (exact text)
 *   already              the question named the target before any edit (counterfactuals: should be ~0); all
 *                        questions are asked before the stream starts
 *   prompt success       the edit's own prompt, /v1/completions, greedy: the continuation starts with the target
 *                        (the classic edit-success metric; separates "the edit took" from "chat transfers it")
 * Needs models/<model>/edit_stats.safetensors (npm run edits:stats -- --model models/smollm2-135m --layers 24,25,26).
 * Usage: npm run eval:edits-chat -- [--model models/smollm2-135m] [--edits 100] [--minutes M] [--contexts plain|chat|plain+chat]
 *        [--out bench/out/edits-chat.json]
 * `--contexts`: the server's PATCHBAY_EDIT_CONTEXTS (where keys and values are taken; README); unset = its default.
 * The JSON keeps every answer: per edit right after (`rows`), and at the end (`end`: question, paraphrase and
 * prompt continuation of every edit), so the scores can be checked by hand.
 * `--marks 20,50`: also evaluate everything (as at the end) right after those edits, stored under `marks`.
 * `--minutes`: stop posting edits after M minutes of stream and evaluate the edits made so far (retention = the
 * first 10 % of those). The JSON is rewritten after every edit, so a run cut short still reports what it did.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServer } from './lib/server-process.ts';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m' },
    edits: { type: 'string', default: '100' },
    out: { type: 'string', default: 'bench/out/edits-chat.json' },
    'max-tokens': { type: 'string', default: '24' },
    minutes: { type: 'string', default: 'Infinity' },
    marks: { type: 'string', default: '' },
    contexts: { type: 'string' },
  },
});
interface RealEdit { relation: string; subject: string; prompt: string; target: string; question: string; paraphrase: string }
const data = JSON.parse(readFileSync('tools/edits/real_counterfactuals.json', 'utf8')) as { edits: RealEdit[]; unrelated: string[] };
const N = Math.min(Number(args.edits), data.edits.length);
const planned = data.edits.slice(0, N);
const edits: RealEdit[] = [];
const TOKEN = 'edits-chat-bench';
const dataDir = mkdtempSync(join(tmpdir(), 'edits-chat-'));
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const loadStart = load();

const server = await startServer(
  // One session per version (no branch-free twin): the shared machine's memory is tight.
  { PATCHBAY_MODEL_DIR: args.model!, PATCHBAY_ADMIN_TOKEN: TOKEN, PATCHBAY_DATA_DIR: dataDir, PATCHBAY_THREADS: '2', PATCHBAY_PLAIN_SESSION: 'off', ...(args.contexts ? { PATCHBAY_EDIT_CONTEXTS: args.contexts } : {}) },
  undefined,
  600_000,
);
const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string; parent?: string | null }[] };
const modelId = models.data.find((m) => !m.parent)!.id;

async function ask(question: string): Promise<string> {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: modelId, messages: [{ role: 'user', content: question }], max_tokens: Number(args['max-tokens']), temperature: 0 }),
  });
  if (!res.ok) throw new Error(`chat answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
}

async function complete(prompt: string): Promise<string> {
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: modelId, prompt, max_tokens: 6, temperature: 0 }),
  });
  if (!res.ok) throw new Error(`completion answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
}
const startsWith = (text: string, target: string) => text.trimStart().startsWith(target.trim());

/** The answer names the target: the target's words as a whole-word, case-insensitive match. */
function names(answer: string, target: string): boolean {
  const t = target.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}])${t}($|[^\\p{L}])`, 'iu').test(answer);
}

const CONCURRENCY = 4;
const markAt = args.marks!.split(',').filter((x) => x !== '').map(Number);
const rate = (xs: boolean[]) => (xs.length === 0 ? null : xs.filter(Boolean).length / xs.length);
const t0 = performance.now();
const already: boolean[] = [];
const unrelatedBefore: string[] = [];
for (const q of data.unrelated) unrelatedBefore.push(await ask(q));

interface Row { i: number; subject: string; target: string; seq: number; ackMs: number; computeMs: number; steps: number; nllBefore: number; nllAfter: number; answerBefore: string; answer: string; success: boolean; promptSuccess: boolean }
const rows: Row[] = [];
let report: Record<string, unknown> = {};
/** End-of-stream style evaluations taken after edit k of the stream (`--marks`), kept in every later write. */
const marks: Record<string, unknown> = {};
const write = (extra: Record<string, unknown>) => {
  report = {
    marks,
    model: args.model, modelId, contexts: args.contexts ?? 'server default', edits: rows.length, planned: N, layers: 'from edit_stats.safetensors', load_start: loadStart, load_now: load(),
    minutes: (performance.now() - t0) / 60000, already: rate(already), success_right_after: rate(rows.map((r) => r.success)), prompt_success_right_after: rate(rows.map((r) => r.promptSuccess)), rows, ...extra,
  };
  mkdirSync(dirname(args.out!), { recursive: true });
  writeFileSync(args.out!, JSON.stringify(report, null, 1));
};

try {
  const answersBefore = await pool(planned.map((e) => () => ask(e.question)));
  for (const [i, e] of planned.entries()) {
    if ((performance.now() - t0) / 60000 > Number(args.minutes)) break;
    const answerBefore = answersBefore[i]!;
    already.push(names(answerBefore, e.target));
    edits.push(e);
    const t = performance.now();
    const res = await fetch(`${server.url}/admin/edits`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ edits: [{ prompt: e.prompt, target: e.target, subject: e.subject }] }),
    });
    if (!res.ok) throw new Error(`edit ${i} answered ${res.status}: ${await res.text()}`);
    const ack = (await res.json()) as { seq: number; edits: { value_search?: { steps: number; nllBefore: number; nllAfter: number }; ms: { compute: number } }[] };
    const ackMs = performance.now() - t;
    const a = ack.edits[0]!;
    const answer = await ask(e.question);
    const continuation = await complete(e.prompt);
    const row: Row = {
      i, subject: e.subject, target: e.target, seq: ack.seq, ackMs, computeMs: a.ms.compute, steps: a.value_search?.steps ?? NaN,
      nllBefore: a.value_search?.nllBefore ?? NaN, nllAfter: a.value_search?.nllAfter ?? NaN, answerBefore, answer, success: names(answer, e.target), promptSuccess: startsWith(continuation, e.target),
    };
    rows.push(row);
    console.log(`#${i + 1} ${e.subject} →${e.target}: chat ${row.success ? 'ok ' : 'no '} prompt ${row.promptSuccess ? 'ok ' : 'no '} ${(ackMs / 1000).toFixed(1)} s, steps ${row.steps}, nll ${row.nllBefore.toFixed(2)}→${row.nllAfter.toFixed(2)} | ${answer.replace(/\s+/g, ' ').slice(0, 70)}`);
    write({});
    if (markAt.includes(rows.length)) {
      marks[String(rows.length)] = await evaluate(edits);
      console.log(`mark ${rows.length}: ${summary(marks[String(rows.length)] as Record<string, unknown>)}`);
      write({});
    }
  }
  const r = await evaluate(edits);
  write(r);
  console.log(`${rows.length} edits in ${(report['minutes'] as number).toFixed(1)} min (load ${loadStart} → ${load()}): already ${pct(report['already'])}, ${summary(r)}; wrote ${args.out}`);
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

/**
 * After the edits so far: every edit's question, paraphrase and own prompt again (retention = the first 10 %),
 * and the unrelated questions (preservation: greedy answer unchanged from before the stream).
 */
async function evaluate(done: readonly RealEdit[]): Promise<Record<string, unknown>> {
  const retained = Math.max(1, Math.round(done.length / 10));
  const end = await pool(
    done.map((e, i) => async () => {
      const answer = await ask(e.question);
      const para = await ask(e.paraphrase);
      const continuation = await complete(e.prompt);
      return { i, subject: e.subject, target: e.target, answer, held: names(answer, e.target), paraphrase: para, paraphraseOk: names(para, e.target), continuation, promptHeld: startsWith(continuation, e.target) };
    }),
  );
  // One at a time, as before the stream: batched decoding could flip a near-tie and count as a change.
  const unrelatedAfter: string[] = [];
  for (const q of data.unrelated) unrelatedAfter.push(await ask(q));
  const doneRows = rows.slice(0, done.length);
  return {
    edits_evaluated: done.length,
    load: load(),
    success_right_after: rate(doneRows.map((x) => x.success)),
    prompt_success_right_after: rate(doneRows.map((x) => x.promptSuccess)),
    retention_first_10pct: rate(end.slice(0, retained).map((x) => x.held)),
    held_at_end: rate(end.map((x) => x.held)),
    prompt_retention_first_10pct: rate(end.slice(0, retained).map((x) => x.promptHeld)),
    prompt_held_at_end: rate(end.map((x) => x.promptHeld)),
    paraphrase: rate(end.map((x) => x.paraphraseOk)),
    preservation: rate(unrelatedAfter.map((a, i) => a === unrelatedBefore[i])),
    unrelated: data.unrelated.map((q, i) => ({ q, before: unrelatedBefore[i], after: unrelatedAfter[i] })),
    end,
    ack_ms_median: doneRows.map((x) => x.ackMs).sort((x, y) => x - y)[Math.floor(doneRows.length / 2)],
  };
}

/**
 * Runs `tasks` with CONCURRENCY in flight (the server batches them), results in order. Used for the questions
 * whose score is a target match (held, paraphrase, already); the unrelated questions, whose score is exact text
 * equality, are asked one at a time before and after.
 */
async function pool<T>(tasks: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const lane = async () => {
    for (let k = next++; k < tasks.length; k = next++) out[k] = await tasks[k]!();
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return out;
}

function summary(r: Record<string, unknown>): string {
  const n = r['edits_evaluated'] as number;
  return (
    `${n} edits: success right after ${pct(r['success_right_after'])} (prompt ${pct(r['prompt_success_right_after'])}), retention (first ${Math.max(1, Math.round(n / 10))}) ${pct(r['retention_first_10pct'])}, ` +
    `held at end ${pct(r['held_at_end'])} (prompt ${pct(r['prompt_held_at_end'])}), paraphrase ${pct(r['paraphrase'])}, preservation ${pct(r['preservation'])}`
  );
}

function pct(x: unknown): string {
  return typeof x === 'number' ? `${(x * 100).toFixed(0)} %` : 'n/a';
}
