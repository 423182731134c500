/**
 * The reduced-branch session of the adapters a server finds at start is built before it serves
 * (server/branches-ahead.ts): their first request runs every step, prefill included, on it, with the tokens of
 * a server that builds on use; nothing is loaded ahead; a union that is the whole set of branches builds nothing.
 */
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { REPO_ROOT, removeTempDirs, tempDir } from '../registry/fixtures.ts';
import { request, startAdapterServer, type AdapterServer } from './adapter-server.ts';

after(removeTempDirs);

/** An adapter dir holding copies of the named demo adapters. */
async function adapterDir(ids: readonly string[]): Promise<string> {
  const dir = await tempDir();
  for (const id of ids) await cp(path.join(REPO_ROOT, 'adapters', id), path.join(dir, id), { recursive: true });
  return dir;
}

async function complete(s: AdapterServer, body: Record<string, unknown>): Promise<string> {
  const res = await request(s.app, 'POST', '/v1/completions', { prompt: 'HAMLET.\nTo be, or not', max_tokens: 12, temperature: 0, ignore_eos: true, ...body });
  const json = (await res.json()) as { choices?: { text: string }[]; error?: { message: string } };
  assert.equal(res.status, 200, json.error?.message);
  return json.choices![0]!.text;
}

/** Steps run so far, by kind and graph, from the server's own step histogram. */
async function steps(s: AdapterServer): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await s.metrics.registry.metrics()).split('\n')) {
    const m = /^patchbay_step_duration_seconds_count\{kind="(\w+)",graph="([\w-]+)"\} (\d+)$/.exec(line);
    if (m) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return out;
}

const REQUESTS = [{ model: 'lora-comedy' }, { model: 's2ft-histories' }, { model: 'tiny-gpt2', adapters: [{ id: 'lora-comedy', weight: 0.5 }, { id: 's2ft-histories', weight: 0.5 }] }];

test('adapters found at start: every step of their first requests runs on the reduced graph, same tokens as building on use', async () => {
  // lora-comedy: c_attn of 4 blocks; s2ft-histories: c_proj and c_fc of 4 blocks: 12 of tiny-gpt2's 16 branches.
  const dir = await adapterDir(['lora-comedy', 's2ft-histories']);
  const ahead = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir, branchesAhead: true });
  const onUse = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: dir });
  try {
    assert.equal(ahead.registry.isResident('lora-comedy'), false, 'the layers come from headers; nothing is loaded ahead');
    for (const body of REQUESTS) assert.equal(await complete(ahead, body), await complete(onUse, body), JSON.stringify(body));
    const ran = await steps(ahead);
    assert.deepEqual([...ran.keys()].sort(), ['decode delta-used', 'prefill delta-used']);
    assert.equal(ran.get('decode delta-used'), REQUESTS.length * 11);
    // The server that builds on use ran its first steps on the full delta graph.
    assert.ok((await steps(onUse)).get('decode delta')! > 0);
  } finally {
    await ahead.close();
    await onUse.close();
  }
});

test('adapters whose layers cover every branch build nothing ahead', async () => {
  // lora-tragedy touches all 16 branches: a reduced graph would be the full one.
  const s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: await adapterDir(['lora-comedy', 'lora-tragedy']), branchesAhead: true });
  try {
    await complete(s, { model: 'lora-comedy' });
    assert.ok((await steps(s)).get('prefill delta') === 1, 'the first prefill ran on the full delta graph');
  } finally {
    await s.close();
  }
});

test('an adapter registered through the admin API gets its reduced session before the call answers', async () => {
  // Start-up union: lora-comedy (4 layers) takes the first of the two sessions; s2ft-histories, registered
  // later from outside the adapter dir, the second.
  const registered = await adapterDir(['s2ft-histories']);
  const s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: await adapterDir(['lora-comedy']), adminToken: 'tok', branchesAhead: true });
  try {
    const res = await request(s.app, 'POST', '/admin/adapters', { id: 'histories', path: path.join(registered, 's2ft-histories') }, 'tok');
    assert.equal(res.status, 201, await res.text());
    await complete(s, { model: 'histories' });
    await complete(s, { model: 'lora-comedy' });
    assert.deepEqual([...(await steps(s)).keys()].sort(), ['decode delta-used', 'prefill delta-used']);
  } finally {
    await s.close();
  }
});
