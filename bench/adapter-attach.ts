/**
 * bench/adapter-attach — S²FT vs LoRA with the same number of trainable parameters, side by side:
 *   attach = loadAdapter (read + validate + compile to delta factors), median of N;
 *   per-step cost on the delta path (all-linear GPT-2 rewrite, decode with 64 cached, batch 1 and 8),
 *   every row carrying the adapter, vs rows carrying nothing.
 * S²FT: adapters/s2ft-histories (per layer 2 heads of attn.c_proj input side = k 128, 32 mlp.c_fc rows).
 * LoRA: random factors on the same modules with r chosen so r·Σ(d_in+d_out) ≈ the S²FT parameter count.
 *
 *   npx tsx bench/adapter-attach.ts [--threads 1] [--rounds 7] [--runs 20]
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { attachTarget, loadAdapter } from '../src/adapters/index.ts';
import { encodeSafetensors, type TensorToWrite } from '../src/adapters/safetensors-writer.ts';
import { SafetensorsFile } from '../src/adapters/safetensors.ts';
import { addDeltaBranches } from '../src/runtime/graph/index.ts';
import type { DeltaBinding } from '../src/runtime/types.ts';
import { mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { deltaTensors } from '../src/runtime/delta-feeds.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({ options: { threads: { type: 'string', default: '1' }, rounds: { type: 'string', default: '7' }, runs: { type: 'string', default: '20' } } });
const bytes = new Uint8Array(await readFile('models/tiny-gpt2/onnx/model.onnx'));
const rw = addDeltaBranches(bytes, 'all-linear');
const target = attachTarget(rw, 'all-linear');

const s2ft = await loadAdapter('adapters/s2ft-histories', target);
const s2ftFile = await SafetensorsFile.open('adapters/s2ft-histories/adapter_model.safetensors');
const s2ftParams = [...s2ftFile.header.tensors.values()].filter((t) => t.name.endsWith('.s2ft.S')).reduce((s, t) => s + t.shape[0]! * t.shape[1]!, 0);
await s2ftFile.close();
const perR = s2ft.modules.reduce((s, m) => s + target.layers.get(m)!.dIn + target.layers.get(m)!.dOut, 0);
const r = Math.round(s2ftParams / perR);

const dir = join(await mkdtemp(join(tmpdir(), 'lora-eq-')), 'lora-eq');
await mkdir(dir);
const tensors: Record<string, TensorToWrite> = {};
for (const m of s2ft.modules) {
  const l = target.layers.get(m)!;
  tensors[`base_model.model.${m}.lora_A.weight`] = { dtype: 'F32', shape: [r, l.dIn], data: new Float32Array(r * l.dIn).fill(0.01) };
  tensors[`base_model.model.${m}.lora_B.weight`] = { dtype: 'F32', shape: [l.dOut, r], data: new Float32Array(l.dOut * r).fill(0.01) };
}
await writeFile(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: r, target_modules: ['c_proj', 'c_fc'] }));
await writeFile(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors));

const attach = async (path: string) => {
  const t: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    await loadAdapter(path, target);
    t.push(performance.now() - t0);
  }
  return median(t);
};
const lora = await loadAdapter(dir, target);
const attachS2ft = await attach('adapters/s2ft-histories');
const attachLora = await attach(dir);

const session = await ort.InferenceSession.create(rw.bytes, { intraOpNumThreads: Number(args.threads) });
function feeds(batch: number, delta: DeltaBinding | undefined): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', new BigInt64Array(batch).fill(5n), [batch, 1]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * 65).fill(1n), [batch, 65]),
    position_ids: new ort.Tensor('int64', new BigInt64Array(batch).fill(64n), [batch, 1]),
  };
  for (let l = 0; l < 4; l++) for (const kv of ['key', 'value']) f[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(batch * 4 * 64 * 64).fill(0.1), [batch, 4, 64, 64]);
  Object.assign(f, deltaTensors(rw.layers, Array.from({ length: batch }, () => delta)));
  return f;
}
const contenders: Array<[string, DeltaBinding | undefined]> = [['no adapter', undefined], [`s2ft (max rank ${s2ft.rank})`, s2ft.binding], [`lora r=${r}`, lora.binding]];
console.log(`trainable params: s2ft ${s2ftParams}, lora r=${r} ${r * perR}`);
console.log(`attach (load+validate+compile, median of 30): s2ft ${attachS2ft.toFixed(2)} ms (${(s2ft.bytes / 1e6).toFixed(2)} MB factors), lora ${attachLora.toFixed(2)} ms (${(lora.bytes / 1e6).toFixed(2)} MB factors)`);
for (const batch of [1, 8]) {
  const fs = contenders.map(([, d]) => feeds(batch, d));
  const times = contenders.map(() => [] as number[]);
  for (const f of fs) for (let w = 0; w < 3; w++) await session.run(f);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (let i = 0; i < fs.length; i++) {
      for (let k = 0; k < Number(args.runs); k++) {
        const t0 = performance.now();
        await session.run(fs[i]!);
        times[i]!.push(performance.now() - t0);
      }
    }
  }
  const base = median(times[0]!);
  console.log(`decode b=${batch}: ` + contenders.map(([n], i) => `${n} ${median(times[i]!).toFixed(3)} ms (${(median(times[i]!) / base).toFixed(3)}×)`).join(', '));
}
await session.release();
