import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EditService } from '../../src/edits/edit-service.ts';
import { EditError } from '../../src/edits/errors.ts';
import { SearchHost } from '../../src/edits/search-host.ts';
import { DEFAULT_EDIT_SETTINGS } from '../../src/edits/settings.ts';
import { loadRuntime, type Runtime } from '../../src/runtime/index.ts';

/**
 * The key probe and value search on a worker thread (PATCHBAY_EDIT_WORKER=on) give the same bits as on the
 * serving thread (off): the same 3-edit stream through the real EditService both ways leaves byte-identical
 * logs (the exact float64 keys and values of every edit) and the same W and C (state hash), on tiny-gpt2
 * (layers 1, 2) and tiny-llama (layer 0). A worker terminated in the middle of an edit fails that edit with
 * search_failed and changes nothing; a new worker takes the next edit. A bad edit found inside the worker is
 * the same EditError as on the serving thread.
 */
const STREAM = [
  { prompt: 'The capital of Veldor is', target: ' Quillon', subject: 'Veldor' },
  { prompt: 'ROMEO. But soft, what light through yonder', target: ' gate' },
  { prompt: 'The sword of Grouthal is made of', target: ' glass and iron', subject: 'Grouthal' },
];
const runtimes: Runtime[] = [];
after(async () => {
  for (const r of runtimes) await r.close();
});

async function runtimeFor(dir: string): Promise<Runtime> {
  const r = await loadRuntime({ modelDir: dir, device: 'cpu', maxBatch: 4, maxQueue: 16, threads: 1 });
  runtimes.push(r);
  return r;
}

async function service(runtime: Runtime, worker: 'on' | 'off'): Promise<{ edits: EditService; log: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), `edits-${worker}-`));
  const edits = await EditService.create({ model: runtime.model, tokenizer: runtime.tokenizer, versions: runtime.versions, dataDir, settings: DEFAULT_EDIT_SETTINGS, device: 'cpu', threads: 1, worker });
  return { edits, log: join(dataDir, 'edits', 'edits.log') };
}

/** The stream through a fresh service: its log bytes and final state hash. */
async function stream(runtime: Runtime, worker: 'on' | 'off'): Promise<{ log: Buffer; hash: string }> {
  const { edits, log } = await service(runtime, worker);
  assert.equal(edits.search instanceof SearchHost, worker === 'on');
  const hashes: string[] = [];
  for (const e of STREAM) {
    await edits.submit([e]);
    hashes.push(edits.stateHash);
  }
  assert.equal(new Set(hashes).size, STREAM.length, 'every edit changed the state');
  const out = { log: readFileSync(log), hash: edits.stateHash };
  await edits.close();
  return out;
}

for (const dir of ['models/tiny-gpt2', 'models/tiny-llama']) {
  test(`${dir}: keys, values, W and C are the same bits with the search in a worker and on the serving thread`, async () => {
    const runtime = await runtimeFor(dir);
    const off = await stream(runtime, 'off');
    const on = await stream(runtime, 'on');
    assert.equal(on.hash, off.hash);
    assert.ok(on.log.length > 1000);
    assert.ok(on.log.equals(off.log), 'the logs (exact float64 keys and values per edit) differ');
  });
}

test('a worker that dies mid-edit fails that edit, changes nothing, and a new worker takes the next one', async () => {
  const runtime = await runtimeFor('models/tiny-gpt2');
  const { edits, log } = await service(runtime, 'on');
  const host = edits.search as SearchHost;
  await edits.submit([STREAM[0]!]);
  const before = { hash: edits.stateHash, seq: edits.seq, log: statSync(log).size, labels: runtime.versions.current().labels };
  const pending = edits.submit([STREAM[1]!]);
  // Mid-search: the probe runs (ORT calls) are done, the Adam loop runs (terminating under an ORT call aborts the process).
  for (let i = 0; !host.searching; i++) {
    assert.ok(i < 60_000, 'the value search never started');
    await new Promise((r) => setTimeout(r, 1));
  }
  await host.terminate();
  await assert.rejects(pending, (e: unknown) => e instanceof EditError && e.code === 'search_failed' && /worker failed/.test(e.message));
  assert.equal(edits.stateHash, before.hash);
  assert.equal(edits.seq, before.seq);
  assert.equal(statSync(log).size, before.log, 'the failed edit reached the log');
  assert.deepEqual(runtime.versions.current().labels, before.labels);

  // The same edits again on a new worker: the state ends where the uninterrupted in-thread stream does.
  await edits.submit([STREAM[1]!]);
  await edits.submit([STREAM[2]!]);
  assert.equal(host.starts, 2);
  const { edits: reference } = await service(runtime, 'off');
  for (const e of STREAM) await reference.commitPrompts([e]);
  assert.equal(edits.stateHash, reference.stateHash);
  await reference.close();

  // A bad edit found in the worker (prompt + target over tiny-gpt2's 256-token context) crosses as the same EditError.
  const hash = edits.stateHash;
  await assert.rejects(edits.submit([{ prompt: 'a '.repeat(400).trim(), target: ' b' }]), (e: unknown) => e instanceof EditError && e.code === 'too_long' && e.param === 'prompt');
  assert.equal(edits.stateHash, hash);
  await edits.close();
});

/** Niceness per thread of this process (Linux: field 19 of /proc/self/task/<tid>/stat), main thread first. */
function threadNice(): number[] {
  const field = (path: string) => Number(readFileSync(path, 'utf8').split(') ')[1]!.split(' ')[16]);
  return [field('/proc/self/stat'), ...readdirSync('/proc/self/task').filter((t) => t !== String(process.pid)).map((t) => field(`/proc/self/task/${t}/stat`))];
}

test('PATCHBAY_EDIT_WORKER_NICE lowers the search worker thread only', { skip: process.platform !== 'linux' || threadNice()[0]! >= 13 }, async () => {
  const before = threadNice();
  const runtime = await runtimeFor('models/tiny-gpt2');
  const edits = await EditService.create({
    model: runtime.model, tokenizer: runtime.tokenizer, versions: runtime.versions, dataDir: mkdtempSync(join(tmpdir(), 'edits-nice-')),
    settings: DEFAULT_EDIT_SETTINGS, device: 'cpu', threads: 1, workerNice: 13,
  });
  const now = threadNice();
  assert.equal(now[0], before[0], 'the serving thread keeps its priority');
  assert.equal(now.filter((n) => n === 13).length, before.filter((n) => n === 13).length + 1, 'one more thread (the worker) at nice 13');
  await edits.close();
});
