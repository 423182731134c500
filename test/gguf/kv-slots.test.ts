/**
 * `--attention append` (the default import: runtime-owned KV slots, src/runtime/slot-kv.ts) against
 * `--attention concat` (the ONNX contract's present = Concat(past, new)) on the tiny Llama GGUF fixtures:
 * the same logits within 1e-4 over a padded prefill and decode steps (slots forced to grow), with per-row
 * LoRA deltas on q/k/v/o, and through the scheduler while rows join and leave a batch. Also the `gqa`
 * graph that bench/kv-context.ts measures: ORT's GroupQueryAttention shares the fed buffer, and
 * onnxruntime-node 1.30 copies the present out anyway (why `append` is the served form).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importGguf } from '../../src/import/import-gguf.ts';
import { readModelInfo } from '../../src/runtime/model-config.ts';
import { createSession } from '../../src/runtime/session.ts';
import { Engine } from '../../src/runtime/engine.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { addDeltaBranches } from '../../src/runtime/graph/index.ts';
import { decodeModel, encodeModel } from '../../src/runtime/graph/onnx.ts';
import { sliceLogits } from '../../src/runtime/graph/logits-slice.ts';
import { loadRuntime } from '../../src/runtime/index.ts';
import { maxAbsDiff } from '../helpers/logits.ts';
import { GGUF_FIXTURE, GGUF_UNTIED_FIXTURE, loadReference } from './fixture.ts';
import type { DeltaBinding, GenerationResult, LayerFactors } from '../../src/runtime/types.ts';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { GgufFile } from '../../src/runtime/gguf/index.ts';
import { readLlamaHparams } from '../../src/import/llama-hparams.ts';
import { buildLlamaOnnx } from '../../src/import/llama-onnx.ts';
import type { BatchKv } from '../../src/runtime/batch-kv.ts';

const TOL = 1e-4;
let work: string;
const dirs: Record<string, string> = {};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'patchbay-kv-slots-'));
  for (const [name, file] of [['mixed', GGUF_FIXTURE], ['untied', GGUF_UNTIED_FIXTURE]] as const) {
    for (const attention of ['append', 'concat'] as const) {
      dirs[`${name}-${attention}`] = join(work, `${name}-${attention}`);
      await importGguf(file, dirs[`${name}-${attention}`]!, 'f32', { attention });
    }
  }
});
after(async () => rm(work, { recursive: true, force: true }));

/** A seeded LoRA on every q/k/v/o projection (uniform in ±0.05), as an adapter binding. */
function lora(layers: readonly { name: string; dIn: number; dOut: number }[]): DeltaBinding {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.1;
  const map = new Map<string, LayerFactors>();
  for (const l of layers) {
    if (!/self_attn\.[qkvo]_proj$/.test(l.name)) continue;
    map.set(l.name, { rank: 2, a: Float32Array.from({ length: l.dIn * 2 }, rnd), b: Float32Array.from({ length: 2 * l.dOut }, rnd) });
  }
  return { key: 'test-lora', layers: map };
}

/** Prefill (rows of different lengths) and 7 decode steps; every row's logits per step. */
async function steps(dir: string, prompts: number[][], withLora: boolean): Promise<{ logits: Float32Array[]; grew: number[] }> {
  const info = await readModelInfo(dir);
  const model = decodeModel(new Uint8Array(await readFile(info.onnxPath)));
  sliceLogits(model);
  const bytes = encodeModel(model);
  const rewrite = withLora ? addDeltaBranches(bytes, 'all-linear') : undefined;
  const session = await createSession(rewrite?.bytes ?? bytes, { device: 'cpu', threads: 1 });
  try {
    // A 3-position block: the slots re-allocate several times during these steps.
    const engine = new Engine({ session, deltaLayers: rewrite?.layers ?? [], shape: info, vocabSize: info.vocabSize, baseVersion: 1, kvBlock: 3, contextLength: info.contextLength });
    const binding = rewrite ? lora(rewrite.layers) : undefined;
    if (rewrite) assert.ok((binding?.layers.size ?? 0) >= 4 * info.numLayers, 'the LoRA found q/k/v/o in every layer');
    const feeds = rewrite ? deltaTensors(rewrite.layers, prompts.map((_, b) => (b % 2 === 0 ? binding : undefined))) : undefined;
    const logits: Float32Array[] = [];
    const grew: number[] = [];
    let step = await engine.forward(engine.emptyKv(prompts.length), prompts, feeds);
    logits.push(...step.logits);
    for (let s = 0; s < 7; s++) {
      step = await engine.forward(step.kv, prompts.map((_, b) => [(s * 11 + b * 5) % info.vocabSize]), feeds);
      logits.push(...step.logits);
      if ('capacity' in step.kv) grew.push(step.kv.capacity);
    }
    return { logits, grew };
  } finally {
    await session.release();
  }
}

function worst(a: Float32Array[], b: Float32Array[]): number {
  assert.equal(a.length, b.length);
  return Math.max(...a.map((x, i) => maxAbsDiff(x, Array.from(b[i]!))));
}

for (const name of ['mixed', 'untied']) {
  test(`${name}: append graph = concat graph within 1e-4 (padded prefill, 7 decode steps, slots growing)`, async () => {
    const prompts = loadReference(name as 'mixed' | 'untied').prompts.map((p) => p.input_ids);
    assert.ok(new Set(prompts.map((p) => p.length)).size > 1);
    const append = await steps(dirs[`${name}-append`]!, prompts, false);
    const concat = await steps(dirs[`${name}-concat`]!, prompts, false);
    const diff = worst(append.logits, concat.logits);
    assert.ok(diff <= TOL, `max |Δlogit| ${diff}`);
    assert.ok(new Set(append.grew).size >= 2, `the slot capacity grew during decode (${append.grew.join(', ')})`);
  });
}

test('per-row LoRA on q/k/v/o attaches to the append graph and gives the concat graph\'s logits', async () => {
  const prompts = loadReference().prompts.map((p) => p.input_ids);
  const append = await steps(dirs['mixed-append']!, prompts, true);
  const concat = await steps(dirs['mixed-concat']!, prompts, true);
  assert.ok(worst(append.logits, concat.logits) <= TOL);
  const plain = await steps(dirs['mixed-append']!, prompts, false);
  assert.ok(worst(append.logits, plain.logits) > 1e-3, 'the LoRA changes the logits');
});

test('continuous batching on slots: rows join and leave, every token and logprob equals the concat graph\'s', async () => {
  const prompts = loadReference().prompts.map((p) => p.input_ids);
  const requests = [
    { ids: prompts[0]!, n: 9 },
    { ids: prompts[1]!, n: 3 },
    { ids: [...prompts[1]!, ...prompts[0]!], n: 6 },
    { ids: prompts[0]!.slice(0, 2), n: 11 },
    { ids: prompts[1]!.slice(1), n: 4 },
  ];
  const serve = async (dir: string): Promise<GenerationResult[]> => {
    const rt = await loadRuntime({ modelDir: dir, device: 'cpu', maxBatch: 3, maxQueue: 8, threads: 1, deltaSelection: 'none', kvBlock: 4 });
    try {
      const handles = requests.map((r) =>
        rt.scheduler.submit({ promptIds: r.ids, logprobs: 0, sampling: { maxTokens: r.n, temperature: 0, topP: 1, topK: 0, stop: [], ignoreEos: true } }),
      );
      return await Promise.all(handles.map((h) => h.result));
    } finally {
      await rt.close();
    }
  };
  const append = await serve(dirs['mixed-append']!);
  const concat = await serve(dirs['mixed-concat']!);
  append.forEach((a, i) => {
    const c = concat[i]!;
    assert.equal(a.tokenIds.length, requests[i]!.n);
    assert.deepEqual(a.tokenIds, c.tokenIds, `request ${i} tokens`);
    a.logprobs!.forEach((e, t) => assert.ok(Math.abs(e.logprob - c.logprobs![t]!.logprob) <= TOL, `request ${i} token ${t} logprob`));
  });
});

test('gqa (bench only): ORT GroupQueryAttention writes into the fed buffer in place and equals concat; onnxruntime-node 1.30 still copies the present out', async () => {
  const file = GgufFile.open(GGUF_FIXTURE);
  const hp = readLlamaHparams(file);
  const gqa = await InferenceSession.create(buildLlamaOnnx(file, hp, 'f32', { attention: 'gqa' }).bytes, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  file.close();
  const info = await readModelInfo(dirs['mixed-concat']!);
  const session = await createSession(new Uint8Array(await readFile(info.onnxPath)), { device: 'cpu', threads: 1 });
  try {
    const engine = new Engine({ session, shape: info, vocabSize: info.vocabSize, baseVersion: 1 });
    const prompt = loadReference().prompts[0]!.input_ids;
    let step = await engine.forward(engine.emptyKv(1), [prompt], {});
    const len = prompt.length;
    const C = len + 8;
    const cols = hp.kvHeads * hp.headDim;
    // Buffers [1, KV, C, hd] holding the prefill's cache; present.* fetched into the very same tensors.
    const past: Record<string, Tensor> = {};
    const fetches: Record<string, Tensor | null> = { logits: null };
    const prefill = step.kv as BatchKv;
    prefill.tensors.forEach((t, i) => {
      const name = `past_key_values.${i >> 1}.${i % 2 ? 'value' : 'key'}`;
      const data = new Float32Array(cols * C);
      for (let h = 0; h < hp.kvHeads; h++) data.set((t.data as Float32Array).subarray(h * len * hp.headDim, (h + 1) * len * hp.headDim), h * C * hp.headDim);
      past[name] = new Tensor('float32', data, [1, hp.kvHeads, C, hp.headDim]);
      fetches[`present.${i >> 1}.${i % 2 ? 'value' : 'key'}`] = past[name]!;
    });
    for (let s = 0; s < 4; s++) {
      const token = (s * 13 + 3) % info.vocabSize;
      const n = len + s;
      const out = await gqa.run(
        {
          ...past,
          input_ids: new Tensor('int64', BigInt64Array.of(BigInt(token)), [1, 1]),
          position_ids: new Tensor('int64', BigInt64Array.of(BigInt(n)), [1, 1]),
          seqlens_k: new Tensor('int32', Int32Array.of(n), [1]),
          total_sequence_length: new Tensor('int32', Int32Array.of(n + 1), []),
        },
        fetches as never,
      );
      step = await engine.forward(step.kv, [[token]], {});
      assert.ok(maxAbsDiff(out['logits']!.data as Float32Array, Array.from(step.logits[0]!)) <= TOL, `gqa step ${s}`);
      // ORT wrote the new key column into the fed buffer (shared past/present) …
      const fed = past['past_key_values.1.key']!.data as Float32Array;
      const expected = ((step.kv as BatchKv).tensors[2]!.data as Float32Array).subarray(n * hp.headDim, (n + 1) * hp.headDim);
      assert.ok(maxAbsDiff(fed.subarray(n * hp.headDim, (n + 1) * hp.headDim), Array.from(expected)) <= TOL, `column ${n} written in place`);
      // … but the returned present is a copy of the whole buffer, not a view of it (the per-step copy "append" avoids).
      const returned = out['present.1.key']!.data as Float32Array;
      assert.equal(returned.length, fed.length);
      returned[0] = 12345;
      assert.notEqual(fed[0], 12345);
    }
  } finally {
    await session.release();
    await gqa.release();
  }
});
