/**
 * Named merges end to end: POST/DELETE /admin/merges on a real runtime, the Trainer checkpoints of
 * test/fixtures/merges/run (real transformers Trainer + PEFT output), logits against the PyTorch / PEFT
 * references of tools/merges/build_merge_fixtures.py, MWA metric precedence, the missing-source 409,
 * refusals that change nothing, and recipes (with the adapters they name) surviving a restart.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { encodeSafetensors } from '../../src/adapters/safetensors-writer.ts';
import { deltaBase, forward } from '../helpers/delta-forward.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { REPO_ROOT, removeTempDirs, tempDir, writeLora, realTarget } from '../registry/fixtures.ts';
import { request, startAdapterServer, type AdapterServer, type ErrorBody } from './adapter-server.ts';

const TOKEN = 'merge-admin';
const FIX = path.join(REPO_ROOT, 'test', 'fixtures', 'merges');
const STEPS = [20, 40, 60, 80, 100];

interface Logits {
  input_ids: number[];
  last_logits: number[];
  all_position_logits?: number[][];
}
interface References {
  tolerance: number;
  checkpoints: { path: string; step: number; loss: number }[];
  mwa: { weights: number[]; logits: Logits[] };
  truncated: { rank: number; rel_errors: Record<string, number>; overall_rel_error: number; logits: Logits[] };
}
interface MergeView {
  id: string;
  object: string;
  rank: number | null;
  pinned: boolean;
  recipe: {
    method: string;
    sources: { id: string; weight: number; metric?: { name: string; value: number; from: string } }[];
    truncation?: { rank: number; modules: Record<string, number>; overall: number };
  };
}

let refs: References;
let s: AdapterServer;
let dataDir: string;
let extra: string;

const startServer = () =>
  startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters'), adminToken: TOKEN, adapterRoots: [FIX, tmpdir()], dataDir });
const admin = (method: string, route: string, body?: unknown) => request(s.app, method, route, body, TOKEN);
const complete = (model: string, extraFields: Record<string, unknown> = {}) =>
  request(s.app, 'POST', '/v1/completions', { model, prompt: 'ROMEO.\nBut soft,', max_tokens: 6, temperature: 0, ...extraFields });
const text = async (res: Response) => {
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
};
async function expectError(res: Response, status: number, code: string, param?: string | null): Promise<ErrorBody> {
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, status, body.error?.message);
  assert.equal(body.error.code, code, body.error.message);
  if (param !== undefined) assert.equal(body.error.param, param);
  return body;
}
const adminList = async () => JSON.stringify(((await (await admin('GET', '/admin/adapters')).json()) as { data: unknown[] }).data);

before(async () => {
  refs = JSON.parse(await readFile(path.join(FIX, 'references.json'), 'utf8')) as References;
  dataDir = await tempDir('patchbay-data-');
  extra = await tempDir();
  // An adapter carrying its metrics in the safetensors __metadata__ (precedence 2).
  const dir = await writeLora(path.join(extra, 'with-metadata'), await realTarget('tiny-gpt2'), { modules: ['c_attn'], rank: 2, seed: 21 });
  const file = path.join(dir, 'adapter_model.safetensors');
  const { decodeSafetensors } = await import('../../src/adapters/safetensors.ts');
  const decoded = decodeSafetensors(await readFile(file));
  const tensors = Object.fromEntries([...decoded.header.tensors.keys()].map((n) => {
    const t = decoded.tensor(n);
    return [n, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }];
  }));
  await writeFile(file, encodeSafetensors(tensors, { eval_loss: '2.5', global_step: '300' }));
  s = await startServer();
  for (const step of STEPS) {
    const res = await admin('POST', '/admin/adapters', { id: `ckpt-${step}`, path: path.join(FIX, 'run', `checkpoint-${step}`) });
    assert.equal(res.status, 201, await res.text());
  }
  assert.equal((await admin('POST', '/admin/adapters', { id: 'with-metadata', path: dir })).status, 201);
});
after(async () => {
  await s?.close();
  await removeTempDirs();
});

async function checkLogits(id: string, expected: Logits[], tolerance: number): Promise<number> {
  const b = await deltaBase('tiny-gpt2');
  const delta = await s.registry.binding(id);
  let worst = 0;
  for (const p of expected) {
    const { data, vocab } = await forward(b, [p.input_ids], [delta]);
    worst = Math.max(worst, maxAbsDiff(data.subarray(data.length - vocab), p.last_logits));
    p.all_position_logits?.forEach((row, pos) => (worst = Math.max(worst, maxAbsDiff(data.subarray(pos * vocab, (pos + 1) * vocab), row))));
  }
  assert.ok(worst <= tolerance, `${id}: logits differ from the PyTorch reference by ${worst}`);
  return worst;
}

test('MWA by eval loss over Trainer checkpoints: weights from trainer_state.json, logits match PEFT', async (t) => {
  const res = await admin('POST', '/admin/merges', { id: 'mwa-loss', method: 'mwa', metric: 'loss', penalty: 1, sources: STEPS.map((n) => ({ id: `ckpt-${n}` })) });
  assert.equal(res.status, 201);
  const view = (await res.json()) as MergeView;
  assert.equal(view.object, 'merge');
  view.recipe.sources.forEach((src, i) => {
    assert.equal(src.metric!.from, 'trainer_state');
    assert.equal(src.metric!.value, refs.checkpoints[i]!.loss);
    assert.ok(Math.abs(src.weight - refs.mwa.weights[i]!) < 1e-12, `weight ${i}`);
  });
  assert.ok(Math.abs(view.recipe.sources.reduce((a, x) => a + x.weight, 0) - 1) < 1e-12, 'normalised');
  t.diagnostic(`max |logit − PEFT| = ${(await checkLogits('mwa-loss', refs.mwa.logits, refs.tolerance)).toExponential(2)}`);
  // Steps: w ∝ step^p, also read from the checkpoints.
  const bySteps = (await (await admin('POST', '/admin/merges', { id: 'mwa-steps', method: 'mwa', metric: 'steps', penalty: 2, sources: STEPS.map((n) => ({ id: `ckpt-${n}` })) })).json()) as MergeView;
  const norm = STEPS.reduce((a, n) => a + n * n, 0);
  bySteps.recipe.sources.forEach((src, i) => assert.ok(Math.abs(src.weight - STEPS[i]! ** 2 / norm) < 1e-12));
});

test('rank truncation: per-module and overall relative error and logits match the PyTorch truncated SVD', async (t) => {
  const res = await admin('POST', '/admin/merges', {
    id: 'ta-rank6', method: 'task_arithmetic', rank: refs.truncated.rank,
    sources: [{ id: 'ckpt-100', weight: 1 }, { id: 'lora-comedy', weight: 0.5 }],
  });
  assert.equal(res.status, 201);
  const view = (await res.json()) as MergeView;
  const tr = view.recipe.truncation!;
  assert.deepEqual(Object.keys(tr.modules).sort(), Object.keys(refs.truncated.rel_errors).sort());
  for (const [m, e] of Object.entries(refs.truncated.rel_errors)) assert.ok(Math.abs(tr.modules[m]! - e) < 1e-5, `${m}: ${tr.modules[m]} vs ${e}`);
  assert.ok(Math.abs(tr.overall - refs.truncated.overall_rel_error) < 1e-5);
  assert.equal(view.rank, refs.truncated.rank);
  t.diagnostic(`overall relative error ${tr.overall.toFixed(4)}; max |logit − PyTorch| = ${(await checkLogits('ta-rank6', refs.truncated.logits, refs.tolerance)).toExponential(2)}`);
});

test('a merge serves as model and inside adapters: [...], is listed with its recipe, and deletes', async () => {
  assert.equal((await admin('POST', '/admin/merges', { id: 'mix', method: 'task_arithmetic', sources: [{ id: 'lora-comedy', weight: 1 }, { id: 'lora-tragedy', weight: -0.5 }] })).status, 201);
  const base = await text(await complete('tiny-gpt2'));
  const merged = await text(await complete('mix'));
  assert.notEqual(merged, base);
  // The merge equals the same mix requested per request.
  assert.equal(await text(await complete('tiny-gpt2', { adapters: [{ id: 'lora-comedy', weight: 1 }, { id: 'lora-tragedy', weight: -0.5 }] })), merged);
  assert.equal((await complete('tiny-gpt2', { adapters: [{ id: 'mix', weight: 1 }, { id: 'lora-comedy', weight: 0.1 }] })).status, 200);
  const models = ((await (await request(s.app, 'GET', '/v1/models')).json()) as { data: { id: string; parent: string | null }[] }).data;
  assert.deepEqual(models.find((m) => m.id === 'mix'), { ...models.find((m) => m.id === 'mix'), parent: 'tiny-gpt2' });
  const listed = ((await (await admin('GET', '/admin/adapters')).json()) as { data: MergeView[] }).data.find((d) => d.id === 'mix')!;
  assert.deepEqual(listed.recipe.sources.map((x) => [x.id, x.weight]), [['lora-comedy', 1], ['lora-tragedy', -0.5]]);
  assert.equal((await admin('DELETE', '/admin/merges/mix')).status, 200);
  await expectError(await complete('mix'), 404, 'model_not_found');
  await expectError(await admin('DELETE', '/admin/merges/mix'), 404, 'merge_not_found');
  await expectError(await admin('DELETE', '/admin/adapters/mwa-loss'), 400, 'is_a_merge');
});

test('MWA precedence: trainer_state over metadata over request numbers; a source without a metric → 400 naming it', async () => {
  const res = await admin('POST', '/admin/merges', {
    id: 'mwa-mixed', method: 'mwa', sources: [{ id: 'ckpt-20', loss: 99 }, { id: 'with-metadata', loss: 99 }, { id: 'lora-comedy', loss: 4 }],
  });
  assert.equal(res.status, 201);
  const src = ((await res.json()) as MergeView).recipe.sources;
  assert.deepEqual(src.map((x) => [x.metric!.from, x.metric!.value]), [['trainer_state', refs.checkpoints[0]!.loss], ['safetensors_metadata', 2.5], ['request', 4]]);
  const before = await adminList();
  const base = await text(await complete('tiny-gpt2'));
  const missing = await expectError(await admin('POST', '/admin/merges', { id: 'no-metric', method: 'mwa', sources: [{ id: 'ckpt-20' }, { id: 'lora-tragedy' }] }), 400, 'missing_metric', 'sources[1]');
  assert.match(missing.error.message, /lora-tragedy/);
  assert.equal(await adminList(), before, 'nothing registered');
  assert.equal(await text(await complete('tiny-gpt2')), base, 'base answers unchanged');
});

test('refusals: 4xx with a message, nothing registered, base answers unchanged', async () => {
  const before = await adminList();
  const base = await text(await complete('tiny-gpt2'));
  const cases: [unknown, number, string, string | null][] = [
    [{ id: 'x', method: 'task_arithmetic', sources: [{ id: 'nope' }] }, 404, 'adapter_not_found', 'sources[0].id'],
    [{ id: 'mwa-loss', method: 'task_arithmetic', sources: [{ id: 'lora-comedy' }] }, 409, 'adapter_exists', 'id'],
    [{ id: 'tiny-gpt2', method: 'task_arithmetic', sources: [{ id: 'lora-comedy' }] }, 409, 'adapter_exists', 'id'],
    [{ id: '../x', method: 'task_arithmetic', sources: [{ id: 'lora-comedy' }] }, 400, 'invalid_adapter_id', 'id'],
    [{ id: 'x', method: 'mwa', sources: [{ id: 'ckpt-20', weight: 2 }] }, 400, 'invalid_value', 'sources[0].weight'],
    [{ id: 'x', method: 'task_arithmetic', penalty: 1, sources: [{ id: 'lora-comedy' }] }, 400, 'invalid_value', 'penalty'],
    [{ id: 'x', method: 'task_arithmetic', sources: [{ id: 'lora-comedy' }, { id: 'lora-comedy' }] }, 400, 'duplicate_source', 'sources[1].id'],
    [{ id: 'x', method: 'task_arithmetic', sources: [{ id: 'mwa-loss' }] }, 400, 'merge_of_merge', 'sources[0].id'],
    [{ id: 'x', method: 'task_arithmetic', rank: 0, sources: [{ id: 'lora-comedy' }] }, 400, 'invalid_value', null],
    [{ id: 'x', method: 'median', sources: [{ id: 'lora-comedy' }] }, 400, 'invalid_value', null],
  ];
  for (const [body, status, code] of cases) {
    const res = await admin('POST', '/admin/merges', body);
    const err = (await res.json()) as ErrorBody;
    assert.equal(res.status, status, `${JSON.stringify(body)} → ${res.status} ${err.error.message}`);
    if (code !== 'invalid_value') assert.equal(err.error.code, code, err.error.message);
    assert.ok(err.error.message.length > 10);
  }
  assert.equal(await adminList(), before, 'nothing registered');
  assert.equal(await text(await complete('tiny-gpt2')), base, 'base answers unchanged');
});

test('a source unregistered after the merge: requests get 409 naming it; re-registering it heals the merge', async () => {
  assert.equal((await admin('POST', '/admin/merges', { id: 'needs-40', method: 'task_arithmetic', sources: [{ id: 'ckpt-40', weight: 1 }, { id: 'lora-comedy', weight: 0.5 }] })).status, 201);
  const served = await text(await complete('needs-40'));
  assert.equal((await admin('DELETE', '/admin/adapters/ckpt-40')).status, 200);
  const err = await expectError(await complete('needs-40'), 409, 'merge_source_missing');
  assert.match(err.error.message, /ckpt-40/);
  await expectError(await complete('tiny-gpt2', { adapters: [{ id: 'needs-40', weight: 1 }] }), 409, 'merge_source_missing');
  assert.equal((await admin('POST', '/admin/adapters', { id: 'ckpt-40', path: path.join(FIX, 'run', 'checkpoint-40') })).status, 201);
  assert.equal(await text(await complete('needs-40')), served);
});

test('recipes persist atomically in PATCHBAY_DATA_DIR and survive a restart (rebuilt lazily)', async () => {
  assert.equal((await admin('POST', '/admin/merges', { id: 'demo', method: 'task_arithmetic', rank: 4, pinned: true, sources: [{ id: 'lora-comedy', weight: 0.7 }, { id: 'lora-tragedy', weight: 0.3 }] })).status, 201);
  const before = await text(await complete('demo'));
  const file = path.join(dataDir, 'merges.json');
  assert.ok(existsSync(file));
  const stored = JSON.parse(await readFile(file, 'utf8')) as { version: number; merges: { id: string }[] };
  assert.ok(stored.merges.some((m) => m.id === 'demo'));
  await s.close();
  s = await startServer();
  const listed = ((await (await admin('GET', '/admin/adapters')).json()) as { data: (MergeView & { resident: boolean })[] }).data.find((d) => d.id === 'demo')!;
  assert.equal(listed.resident, false, 'not built until used');
  assert.equal(listed.recipe.truncation!.rank, 4);
  assert.equal(await text(await complete('demo')), before);
  assert.equal(s.registry.isPinnedResident('demo'), true, 'a pinned merge is pinned once rebuilt');
  // The checkpoints were admin-registered: restored from adapters.json, so merges built on them still serve.
  const ckpt = ((await (await admin('GET', '/admin/adapters')).json()) as { data: { id: string; source: string }[] }).data.find((d) => d.id === 'ckpt-20');
  assert.equal(ckpt?.source, 'admin');
  assert.ok((await text(await complete('mwa-loss'))).length > 0);
});
