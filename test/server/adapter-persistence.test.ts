/**
 * Admin-registered adapters survive a restart of a real server process (src/main.ts over a socket):
 * adapters.json in PATCHBAY_DATA_DIR holds {id, path, pinned, created}; the next process registers each again
 * through the admin call's own validation, serves it (and the merges built on it) exactly as before, logs and
 * skips one that no longer validates (kept in the file until deleted), and DELETE removes a record for good.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { realTarget, removeTempDirs, REPO_ROOT, tempDir, writeLora } from '../registry/fixtures.ts';
import { startMain, type MainProcess } from './main-process.ts';

const TOKEN = 'persist-admin';
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await removeTempDirs();
});

type Server = MainProcess;

async function start(env: Record<string, string>): Promise<Server> {
  const server = await startMain({ PATCHBAY_ADMIN_TOKEN: TOKEN, PATCHBAY_LOG_LEVEL: 'info', ...env }, 600);
  procs.push(server.proc);
  return server;
}

const call = (s: Server, method: string, route: string, body?: unknown) =>
  fetch(`${s.base}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
async function complete(s: Server, model: string): Promise<string> {
  const res = await call(s, 'POST', '/v1/completions', { model, prompt: 'ROMEO.\nBut soft,', max_tokens: 6, temperature: 0 });
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { choices: { text: string }[] }).choices[0]!.text;
}
async function listed(s: Server): Promise<Map<string, { source: string; pinned: boolean; path: string | null; resident: boolean }>> {
  const body = (await (await call(s, 'GET', '/admin/adapters')).json()) as { data: { id: string; source: string; pinned: boolean; path: string | null; resident: boolean }[] };
  return new Map(body.data.map((d) => [d.id, d]));
}
const stored = async (file: string) => JSON.parse(await readFile(file, 'utf8')) as { version: number; adapters: { id: string; path: string; pinned: boolean; created: number }[] };

test('admin-registered adapters are persisted, restored with validation on restart, skipped when invalid, and deleted for good', { timeout: 300_000 }, async () => {
  const target = await realTarget('tiny-gpt2');
  const roots = await tempDir('patchbay-persist-roots-');
  const data = await tempDir('patchbay-persist-data-');
  const spec = { modules: ['c_attn'], rank: 4 };
  await writeLora(path.join(roots, 'keep'), target, { ...spec, seed: 11 });
  await writeLora(path.join(roots, 'spoiled'), target, { ...spec, seed: 12 });
  await writeLora(path.join(roots, 'dropped'), target, { ...spec, seed: 13 });
  const env = { PATCHBAY_DATA_DIR: data, PATCHBAY_ADAPTER_ROOTS: roots, PATCHBAY_ADAPTER_DIR: path.join(REPO_ROOT, 'adapters') };
  const file = path.join(data, 'adapters.json');

  // First process: register three (one pinned), a merge on two of them, delete one.
  let s = await start(env);
  for (const [id, pinned] of [['keep', true], ['spoiled', false], ['dropped', false]] as const) {
    const res = await call(s, 'POST', '/admin/adapters', { id, path: path.join(roots, id), pinned });
    assert.equal(res.status, 201, await res.text());
  }
  assert.equal((await call(s, 'POST', '/admin/merges', { id: 'mix', method: 'task_arithmetic', sources: [{ id: 'keep', weight: 0.6 }, { id: 'spoiled', weight: 0.4 }] })).status, 201);
  assert.equal((await call(s, 'DELETE', '/admin/adapters/dropped')).status, 200);
  const before = { keep: await complete(s, 'keep'), mix: await complete(s, 'mix') };
  const first = await stored(file);
  assert.equal(first.version, 1);
  assert.deepEqual(first.adapters.map((a) => [a.id, a.pinned]), [['keep', true], ['spoiled', false]], 'the deleted one is gone from the file');
  assert.equal(first.adapters[0]!.path, path.join(roots, 'keep'));
  await s.stop();

  // Between runs, one adapter stops validating: a NaN in its factors.
  const tensors: Record<string, TensorToWrite> = {};
  for (const l of target.layers.values()) {
    if (!l.name.endsWith('.c_attn')) continue;
    const B = new Float32Array(l.dOut * 4).fill(0.01);
    B[3] = Number.NaN;
    tensors[`base_model.model.${l.name}.lora_A.weight`] = { dtype: 'F32', shape: [4, l.dIn], data: new Float32Array(4 * l.dIn).fill(0.01) };
    tensors[`base_model.model.${l.name}.lora_B.weight`] = { dtype: 'F32', shape: [l.dOut, 4], data: B };
  }
  await writeFile(path.join(roots, 'spoiled', 'adapter_model.safetensors'), encodeSafetensors(tensors));

  // Second process: `keep` is back, pinned and answering as before; `spoiled` is logged and skipped, not fatal.
  s = await start(env);
  const after1 = await listed(s);
  assert.deepEqual([after1.get('keep')?.source, after1.get('keep')?.pinned, after1.get('keep')?.resident], ['admin', true, true]);
  assert.equal(after1.has('spoiled'), false);
  assert.equal(after1.has('dropped'), false);
  assert.match(s.log(), /admin-registered adapter not restored[^\n]*spoiled[^\n]*adapter_not_finite|spoiled[^\n]*NaN[^\n]*not restored|not restored[^\n]*spoiled/);
  assert.equal(await complete(s, 'keep'), before.keep);
  const missing = await call(s, 'POST', '/v1/completions', { model: 'mix', prompt: 'x', max_tokens: 1 });
  assert.equal(missing.status, 409, 'the merge on the skipped source answers 409 naming it');
  assert.match(((await missing.json()) as { error: { message: string } }).error.message, /spoiled/);
  assert.deepEqual((await stored(file)).adapters.map((a) => a.id), ['keep', 'spoiled'], 'the skipped record is kept');

  // Repaired and registered again it heals the merge; DELETE of a record removes it from the file.
  await writeLora(path.join(roots, 'spoiled'), target, { ...spec, seed: 12 });
  assert.equal((await call(s, 'POST', '/admin/adapters', { id: 'spoiled', path: path.join(roots, 'spoiled') })).status, 201);
  assert.equal(await complete(s, 'mix'), before.mix);
  assert.equal((await call(s, 'DELETE', '/admin/adapters/keep')).status, 200);
  assert.deepEqual((await stored(file)).adapters.map((a) => a.id), ['spoiled']);
  await s.stop();

  // Third process: exactly what the file says.
  s = await start(env);
  const after2 = await listed(s);
  assert.equal(after2.has('keep'), false);
  assert.equal(after2.get('spoiled')?.source, 'admin');
  const gone = await call(s, 'POST', '/v1/completions', { model: 'mix', prompt: 'x', max_tokens: 1 });
  assert.equal(gone.status, 409);
  assert.match(((await gone.json()) as { error: { message: string } }).error.message, /'keep'/);
  assert.doesNotMatch(s.log(), /not restored/);
  await s.stop();
});
