import { readFile } from 'node:fs/promises';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { argmax } from '../../src/runtime/sampler.ts';
import type { ModelInfo } from '../../src/runtime/model-config.ts';

/**
 * The floor Patchbay is measured against: the shortest greedy generate loop onnxruntime-node allows on
 * the same ONNX file — one session, present outputs fed straight back as past inputs, batch 1, no HTTP,
 * no scheduler, no tokenizer in the loop. Append-graph imports (src/import/attention-core.ts) get the same
 * loop over one fixed buffer per layer of prompt + new tokens positions, the step's keys/values written in.
 */
export class BareLoop {
  private constructor(
    private readonly session: InferenceSession,
    private readonly model: ModelInfo,
  ) {}

  static async create(model: ModelInfo, threads: number): Promise<BareLoop> {
    const session = await InferenceSession.create(new Uint8Array(await readFile(model.onnxPath)), {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
    return new BareLoop(session, model);
  }

  async generate(promptIds: readonly number[], newTokens: number): Promise<number[]> {
    if (this.session.outputNames.includes('new_key_values.0.key')) return this.generateAppend(promptIds, newTokens);
    const { numLayers, numKvHeads, headDim, vocabSize } = this.model;
    const feeds: Record<string, Tensor> = {};
    for (let i = 0; i < numLayers; i++) {
      for (const kind of ['key', 'value']) {
        feeds[`past_key_values.${i}.${kind}`] = new Tensor('float32', new Float32Array(0), [1, numKvHeads, 0, headDim]);
      }
    }
    let ids = promptIds.map(BigInt);
    let past = 0;
    const out: number[] = [];
    while (out.length < newTokens) {
      feeds['input_ids'] = new Tensor('int64', BigInt64Array.from(ids), [1, ids.length]);
      feeds['position_ids'] = new Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(past + i)), [1, ids.length]);
      feeds['attention_mask'] = new Tensor('int64', new BigInt64Array(past + ids.length).fill(1n), [1, past + ids.length]);
      const result = await this.session.run(feeds);
      const logits = result['logits']!.data as Float32Array;
      const next = argmax(logits.subarray((ids.length - 1) * vocabSize, ids.length * vocabSize));
      out.push(next);
      for (let i = 0; i < numLayers; i++) {
        feeds[`past_key_values.${i}.key`] = result[`present.${i}.key`]!;
        feeds[`past_key_values.${i}.value`] = result[`present.${i}.value`]!;
      }
      past += ids.length;
      ids = [BigInt(next)];
    }
    return out;
  }

  private async generateAppend(promptIds: readonly number[], newTokens: number): Promise<number[]> {
    const { numLayers, numKvHeads: heads, headDim: dim, vocabSize } = this.model;
    const cap = promptIds.length + newTokens;
    const buffers = Array.from({ length: 2 * numLayers }, () => new Float32Array(heads * cap * dim));
    const feeds: Record<string, Tensor> = {};
    buffers.forEach((b, t) => (feeds[`past_key_values.${t >> 1}.${t % 2 ? 'value' : 'key'}`] = new Tensor('float32', b, [1, heads, cap, dim])));
    let ids = promptIds.map(BigInt);
    let past = 0;
    const out: number[] = [];
    while (out.length < newTokens) {
      const s = ids.length;
      const mask = new BigInt64Array(cap + s);
      mask.fill(1n, 0, past).fill(1n, cap, cap + s);
      feeds['input_ids'] = new Tensor('int64', BigInt64Array.from(ids), [1, s]);
      feeds['position_ids'] = new Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(past + i)), [1, s]);
      feeds['attention_mask'] = new Tensor('int64', mask, [1, cap + s]);
      const result = await this.session.run(feeds);
      const logits = result['logits']!.data as Float32Array;
      out.push(argmax(logits.subarray((s - 1) * vocabSize, s * vocabSize)));
      buffers.forEach((b, t) => {
        const fresh = result[`new_key_values.${t >> 1}.${t % 2 ? 'value' : 'key'}`]!.data as Float32Array;
        for (let h = 0; h < heads; h++) b.set(fresh.subarray(h * s * dim, (h + 1) * s * dim), (h * cap + past) * dim);
      });
      past += s;
      ids = [BigInt(out[out.length - 1]!)];
    }
    return out;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
