/**
 * Patchbay's S²FT adapter format (ours; the paper's code only saves a fused, permuted model).
 *
 * Directory:
 *   adapter_config.json        {"peft_type": "S2FT", "modules": {<module>: {"axis": "output" | "input"}},
 *                               "base_model_name_or_path"?: string}
 *   adapter_model.safetensors  per module `<module>.s2ft.idx` I32 [k] (original channel ids, unique)
 *                                         `<module>.s2ft.S`   float [k, d_in] (output) | [d_out, k] (input)
 *
 * With PyTorch weights W [d_out, d_in] (y = x·Wᵀ):
 *   axis "output": rows change,    ΔW[idx, :] = S,  S ∈ R^{k×d_in};  y[..., idx] += x·Sᵀ
 *   axis "input":  columns change, ΔW[:, idx] = S,  S ∈ R^{d_out×k}; y += x[..., idx]·Sᵀ
 * Module names are the base model's module paths (`transformer.h.0.mlp.c_fc`), without PEFT's
 * `base_model.model.` prefix. GPT-2 Conv1D modules follow the same nn.Linear convention: axis "output"
 * means output features even though HF stores those weights as [d_in, d_out].
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CONFIG_FILE, WEIGHTS_FILE } from './adapter-files.ts';
import { writeSafetensors, type TensorToWrite } from './safetensors-writer.ts';

export const S2FT_AXES = ['output', 'input'] as const;
export type S2ftAxis = (typeof S2FT_AXES)[number];

export const S2ftConfigSchema = z.looseObject({
  peft_type: z.literal('S2FT'),
  modules: z.record(z.string().min(1), z.strictObject({ axis: z.enum(S2FT_AXES) })),
  base_model_name_or_path: z.string().nullish(),
});
export type S2ftConfig = z.infer<typeof S2ftConfigSchema>;

export const idxName = (module: string) => `${module}.s2ft.idx`;
export const sName = (module: string) => `${module}.s2ft.S`;

export interface S2ftModule {
  axis: S2ftAxis;
  /** Original channel ids: output rows (axis output) or input columns (axis input). */
  idx: Int32Array;
  /** Row-major: [k, d_in] for axis output, [d_out, k] for axis input. */
  S: Float32Array;
  /** The other dimension: d_in for axis output, d_out for axis input. */
  other: number;
}

export async function writeS2ftAdapter(dir: string, modules: ReadonlyMap<string, S2ftModule>, baseModel?: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  const config: S2ftConfig = { peft_type: 'S2FT', modules: {}, ...(baseModel ? { base_model_name_or_path: baseModel } : {}) };
  for (const [name, m] of modules) {
    const k = m.idx.length;
    config.modules[name] = { axis: m.axis };
    tensors[idxName(name)] = { dtype: 'I32', shape: [k], data: m.idx };
    tensors[sName(name)] = { dtype: 'F32', shape: m.axis === 'output' ? [k, m.other] : [m.other, k], data: m.S };
  }
  await writeFile(join(dir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  await writeSafetensors(join(dir, WEIGHTS_FILE), tensors, { format: 'patchbay-s2ft' });
}
