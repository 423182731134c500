/**
 * A base ONNX model rewritten with delta branches, run directly through onnxruntime on full sequences with
 * per-row factors (no KV cache: empty past tensors [b, h, 0, hd]). Shared by the tests that compare logits
 * with PyTorch / PEFT references.
 */
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import { attachTarget, type AttachTarget } from '../../src/adapters/index.ts';
import { deltaTensors } from '../../src/runtime/delta-feeds.ts';
import { addDeltaBranches, type DeltaLayer } from '../../src/runtime/graph/index.ts';
import { decodeModel, valueInfoDims } from '../../src/runtime/graph/onnx.ts';
import { argmax } from '../../src/runtime/sampler.ts';
import type { DeltaBinding } from '../../src/runtime/types.ts';

export interface DeltaBase {
  session: ort.InferenceSession;
  layers: DeltaLayer[];
  target: AttachTarget;
  past: Array<{ name: string; heads: number; headDim: number }>;
}

const bases = new Map<string, Promise<DeltaBase>>();

/** models/<name> with delta branches on every linear layer; one session per name per process. */
export function deltaBase(name: string): Promise<DeltaBase> {
  let b = bases.get(name);
  if (!b) {
    b = (async () => {
      const bytes = new Uint8Array(await readFile(`models/${name}/onnx/model.onnx`));
      const rw = addDeltaBranches(bytes, 'all-linear');
      const past = decodeModel(bytes)
        .graph!.input!.filter((i) => i.name!.startsWith('past_key_values.'))
        .map((i) => {
          const d = valueInfoDims(i)!;
          return { name: i.name!, heads: d[1] as number, headDim: d[3] as number };
        });
      const session = await ort.InferenceSession.create(rw.bytes, { intraOpNumThreads: 1 });
      return { session, layers: rw.layers, target: attachTarget(rw, 'all-linear', [name]), past };
    })();
    bases.set(name, b);
  }
  return b;
}

/** Full-sequence forward of equal-length rows; returns logits [rows, seq, vocab]. */
export async function forward(b: DeltaBase, ids: number[][], rows: (DeltaBinding | undefined)[]): Promise<{ data: Float32Array; seq: number; vocab: number }> {
  const n = ids.length;
  const seq = ids[0]!.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [n, seq]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n * seq).fill(1n), [n, seq]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n * seq }, (_, i) => BigInt(i % seq)), [n, seq]),
  };
  for (const p of b.past) feeds[p.name] = new ort.Tensor('float32', new Float32Array(0), [n, p.heads, 0, p.headDim]);
  Object.assign(feeds, deltaTensors(b.layers, rows));
  const out = await b.session.run(feeds);
  const logits = out.logits!;
  return { data: logits.data as Float32Array, seq, vocab: logits.dims[2]! };
}

/** `n` greedy tokens, re-running the whole sequence each step (no cache: the references' own method). */
export async function greedyTokens(b: DeltaBase, prompt: number[], delta: DeltaBinding | undefined, n: number): Promise<number[]> {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const { data, vocab } = await forward(b, [seq], [delta]);
    seq.push(argmax(data.subarray(data.length - vocab)));
  }
  return seq.slice(prompt.length);
}
