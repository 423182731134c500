/** A client that leaves while its adapter loads stops waiting at once; the shared load still completes. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PatchbayError } from '../../src/errors.ts';
import { startAdapterServer, type AdapterServer } from './adapter-server.ts';
import { REPO_ROOT } from './helpers.ts';

let s: AdapterServer;
before(async () => {
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters') });
});
after(() => s.close());

test('resolve rejects with 499 when the signal aborts during the load; the load is cached for others', async () => {
  const { resolver } = s.state.loaded();
  assert.equal(s.registry.isResident('lora-comedy'), false);
  const abort = new AbortController();
  const pending = resolver.resolve({ model: 'lora-comedy' }, abort.signal);
  abort.abort(); // the load has started (files are being read) and has not finished: no await in between
  await assert.rejects(pending, (e: unknown) => e instanceof PatchbayError && e.status === 499 && e.code === 'client_closed_request');
  const other = await resolver.resolve({ model: 'lora-comedy' });
  assert.equal(other.delta?.key, 'lora-comedy');
  assert.equal(s.registry.isResident('lora-comedy'), true);
  assert.equal(s.registry.stats().loads, 1, 'one load, shared');
});

test('an already-aborted signal never waits for a load', async () => {
  const { resolver } = s.state.loaded();
  await assert.rejects(resolver.resolve({ model: 'lora-tragedy' }, AbortSignal.abort()), (e: unknown) => e instanceof PatchbayError && e.status === 499);
});
