/**
 * Memory stays bounded under churn: every request mixes adapters with fresh weights (a new combination to
 * merge and cache each time, so the byte-bounded cache keeps evicting) and prompts of every length up to the
 * context, 8 at a time. A leak of per-request factors (~1 MiB per mix here) or of KV caches would grow RSS by
 * hundreds of MiB between the two phases; the bound asserted is far below that and above allocator noise.
 * Also checks the documented budget figures for the embedded model (runtime/memory-budget.ts).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { memoryBudget } from '../../src/runtime/memory-budget.ts';
import { seededRandom } from '../../src/runtime/sampler.ts';
import { request, startAdapterServer, type AdapterServer } from './adapter-server.ts';
import { REPO_ROOT } from './helpers.ts';

const CACHE_BYTES = 4 << 20;
let s: AdapterServer;
before(async () => {
  s = await startAdapterServer({ model: 'tiny-gpt2', adapterDir: path.join(REPO_ROOT, 'adapters'), cacheBytes: CACHE_BYTES });
});
after(() => s.close());

const MiB = 1 << 20;

test('the memory budget of the embedded model, from its shapes and the default settings', () => {
  const m = s.runtime.model;
  const b = memoryBudget({ ...m, maxBatch: 8, maxQueue: 64, maxCombinedRank: 256, deltaLayerDims: s.runtime.deltaLayers });
  // KV: 2 (k, v) · 4 layers · 8 rows · 4 heads · 256 positions · 64 dims · 4 B = 16 MiB, ×2 while re-packing.
  assert.equal(b.kvCache, 32 * MiB);
  // Delta layers of tiny-gpt2 (all-linear): per block c_attn 256+768, c_proj 256+256, c_fc 256+1024, mlp.c_proj 1024+256.
  const dims = 4 * (1024 + 512 + 1280 + 1280);
  assert.equal(b.factors, 2 * 8 * dims * 256 * 4);
  assert.equal(b.evictedInUse, 72 * dims * 256 * 4);
  assert.equal(b.logits, 8 * 4096 * 4);
});

test('RSS stays bounded under a churn of adapter mixes and prompts of every length', { timeout: 300_000 }, async () => {
  const rand = seededRandom(7);
  const context = s.runtime.model.contextLength;
  const round = async (lengths: number[]) => {
    await Promise.all(
      lengths.map(async (len) => {
        const prompt = Array.from({ length: len }, () => 1 + Math.floor(rand() * 4000));
        const adapters = [
          { id: 'lora-comedy', weight: Math.round(rand() * 1e6) / 1e6 },
          { id: 'lora-tragedy', weight: Math.round(rand() * 1e6) / 1e6 },
        ];
        const res = await request(s.app, 'POST', '/v1/completions', { model: 'tiny-gpt2', adapters, prompt, max_tokens: 2, temperature: 0 });
        assert.equal(res.status, 200, await res.clone().text());
        await res.text();
      }),
    );
    assert.ok(s.registry.stats().residentBytes <= CACHE_BYTES);
  };
  // Phase 1: sweep every length 1 … context − 2 (8 per round), so every shape the allocators will see is seen.
  for (let start = 1; start <= context - 2; start += 8) await round(Array.from({ length: 8 }, (_, i) => Math.min(context - 2, start + i)));
  const afterSweep = process.memoryUsage().rss;
  // Phase 2: as many requests again at random lengths, every one a new mix.
  for (let r = 0; r < 32; r++) await round(Array.from({ length: 8 }, () => 1 + Math.floor(rand() * (context - 2))));
  const afterChurn = process.memoryUsage().rss;
  const growth = (afterChurn - afterSweep) / MiB;
  assert.ok(s.registry.stats().evictions > 100, 'the cache churned');
  assert.ok(growth < 64, `RSS grew ${growth.toFixed(1)} MiB over 256 more requests (${(afterSweep / MiB).toFixed(0)} → ${(afterChurn / MiB).toFixed(0)} MiB)`);
  console.log(`memory churn: RSS ${(afterSweep / MiB).toFixed(0)} MiB after the sweep, ${(afterChurn / MiB).toFixed(0)} MiB after 256 more requests (${growth.toFixed(1)} MiB)`);
});
