/**
 * Hugging Face PEFT LoRA directory → delta factors.
 *
 * PEFT forward per targeted module: y += s·(x·Aᵀ)·Bᵀ with lora_A [r, d_in], lora_B [d_out, r],
 * s = alpha/r (alpha/√r with rsLoRA; r and alpha per module via rank_pattern / alpha_pattern).
 * Compiled for the delta path (y += (x·a)·b):
 *
 *     a = Aᵀ      [d_in, r]     a[i, j] = A[j, i]
 *     b = s·Bᵀ    [r, d_out]    b[j, o] = s·B[o, j]
 *
 * Load order (header first): config → refused features → tensor names → modules resolvable and
 * targeted → shapes against the graph — all before a tensor byte is decoded (the file itself is read
 * whole, in one read, when loading: adapter-files.ts). See peft-config.ts for the matching rules.
 * The finiteness check rides along in the compile loop (one pass over the values, not two).
 */
import { z } from 'zod';
import type { LayerFactors } from '../runtime/types.ts';
import { CONFIG_FILE, configPeftType, type AdapterSource } from './adapter-files.ts';
import { checkBaseModel, invalidAdapter, resolveModules, type AttachTarget } from './attach-target.ts';
import { Slicer } from './cooperative.ts';
import { assertFinite } from './finite.ts';
import { loadedAdapter, type AdapterKind, type LoadedAdapter } from './kind.ts';
import { isTargeted, moduleScaling, PeftLoraConfigSchema, unsupportedFeatures, type PeftLoraConfig } from './peft-config.ts';
import type { TensorInfo } from './safetensors.ts';

const FACTOR = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;
const OUTPUT_HEAD = /(^|\.)(lm_head|embed_out|output_layer)$/;

/** Tensor names that are PEFT but not plain LoRA factors, with what to call them in the 400. */
const REFUSED_TENSORS: ReadonlyArray<[RegExp, string]> = [
  [/\.lora_magnitude_vector(\.default)?(\.weight)?$/, 'DoRA magnitude vector'],
  [/\.lora_[AB](\.default)?\.bias$/, 'LoRA bias'],
  [/\.lora_embedding_[AB](\.default)?$/, 'embedding LoRA (embeddings are not linear layers of the graph)'],
  [/\.modules_to_save\./, 'modules_to_save weights'],
  [/\.trainable_tokens_/, 'trainable tokens'],
];

export const loraKind: AdapterKind = {
  kind: 'lora',
  detect(config) {
    return configPeftType(config) === 'LORA';
  },
  load: loadLora,
  async check(src, target) {
    const { file, plan } = await planLora(src, target);
    await file.close();
    return plan.map((p) => p.module);
  },
};

/** Everything checked before a tensor byte is decoded: config, base, names, targets, shapes. */
async function planLora(src: AdapterSource, target: AttachTarget) {
  const { id } = src;
  const cfg = parseConfig(id, src.config);
  checkBaseModel(id, cfg.base_model_name_or_path, target);
  const file = await src.weights();
  try {
    const pairs = factorPairs(id, file.header.tensors);
    const layers = resolveModules(id, [...pairs.keys()], target);
    const plan = [...pairs].map(([module, { A, B }]) => {
      const layer = layers.get(module)!;
      if (!isTargeted(cfg, module, OUTPUT_HEAD.test(module))) {
        throw invalidAdapter(id, `module ${module} has LoRA tensors but ${CONFIG_FILE} target_modules ${JSON.stringify(cfg.target_modules)} does not select it`);
      }
      const { r, scale } = moduleScaling(cfg, module);
      checkShapes(id, module, A, B, r, layer.dIn, layer.dOut);
      return { module, A, B, r, scale, dIn: layer.dIn, dOut: layer.dOut };
    });
    return { file, plan };
  } catch (err) {
    await file.close();
    throw err;
  }
}

async function loadLora(src: AdapterSource, target: AttachTarget): Promise<LoadedAdapter> {
  const { id } = src;
  const { file, plan } = await planLora(src, target);
  try {
    const factors = new Map<string, LayerFactors>();
    const slicer = new Slicer();
    for (const p of plan) {
      // Views of the file's buffer (F32): compileLora makes the one copy the factors need.
      const A = (await file.read(p.A.name, { view: true })).data as Float32Array;
      const B = (await file.read(p.B.name, { view: true })).data as Float32Array;
      const { factors: f, finite } = compileLoraChecked(A, B, p.r, p.dIn, p.dOut, p.scale);
      if (!finite) {
        assertFinite(id, p.A.name, A);
        assertFinite(id, p.B.name, B);
        throw invalidAdapter(id, `module ${p.module}: lora_B × scaling ${p.scale} overflows float32`, 'adapter_not_finite');
      }
      factors.set(p.module, f);
      await slicer.pause();
    }
    return loadedAdapter(id, 'lora', factors);
  } finally {
    await file.close();
  }
}

function parseConfig(id: string, raw: unknown): PeftLoraConfig {
  if (raw === undefined) throw invalidAdapter(id, `${CONFIG_FILE} is missing`);
  if (typeof raw === 'object' && raw !== null) {
    const refused = unsupportedFeatures(raw as Record<string, unknown>);
    if (refused.length > 0) throw invalidAdapter(id, `uses PEFT features Patchbay does not support: ${refused.join(', ')}`, 'unsupported_adapter_feature');
  }
  const parsed = PeftLoraConfigSchema.safeParse(raw);
  if (!parsed.success) throw invalidAdapter(id, `${CONFIG_FILE}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`);
  if (parsed.data.peft_type !== 'LORA') throw invalidAdapter(id, `peft_type ${parsed.data.peft_type} is not LORA`, 'unsupported_adapter_feature');
  return parsed.data;
}

/** Group header entries into per-module (lora_A, lora_B) pairs; anything else is refused by name. */
function factorPairs(id: string, tensors: ReadonlyMap<string, TensorInfo>): Map<string, { A: TensorInfo; B: TensorInfo }> {
  const partial = new Map<string, { A?: TensorInfo; B?: TensorInfo }>();
  for (const [name, info] of tensors) {
    const m = FACTOR.exec(name);
    if (!m) {
      const refused = REFUSED_TENSORS.find(([re]) => re.test(name));
      throw invalidAdapter(
        id,
        refused ? `tensor ${name}: ${refused[1]} is not supported` : `unexpected tensor ${name} (expected base_model.model.<module>.lora_A|lora_B.weight)`,
        refused ? 'unsupported_adapter_feature' : 'invalid_adapter',
      );
    }
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw invalidAdapter(id, `tensor ${name} is ${info.dtype}, expected a float dtype`);
    const slot = partial.get(m[1]!) ?? {};
    if (slot[m[2] as 'A' | 'B']) throw invalidAdapter(id, `module ${m[1]} has two lora_${m[2]} tensors`);
    slot[m[2] as 'A' | 'B'] = info;
    partial.set(m[1]!, slot);
  }
  const pairs = new Map<string, { A: TensorInfo; B: TensorInfo }>();
  for (const [module, { A, B }] of partial) {
    if (!A || !B) throw invalidAdapter(id, `module ${module} has lora_${A ? 'A' : 'B'} but no lora_${A ? 'B' : 'A'}`);
    pairs.set(module, { A, B });
  }
  if (pairs.size === 0) throw invalidAdapter(id, 'adapter_model.safetensors holds no LoRA factors');
  return pairs;
}

function checkShapes(id: string, module: string, A: TensorInfo, B: TensorInfo, r: number, dIn: number, dOut: number): void {
  const fail = (msg: string) => invalidAdapter(id, `module ${module}: ${msg}`, 'adapter_shape_mismatch');
  const a = A.shape;
  const b = B.shape;
  if (a.length !== 2) throw fail(`lora_A is [${a.join(', ')}], expected 2-D [r, d_in]`);
  if (b.length !== 2) throw fail(`lora_B is [${b.join(', ')}], expected 2-D [d_out, r]`);
  if (a[1] !== dIn) throw fail(`lora_A is [${a.join(', ')}] but the layer takes d_in=${dIn}`);
  if (b[0] !== dOut) throw fail(`lora_B is [${b.join(', ')}] but the layer gives d_out=${dOut}`);
  if (a[0] !== b[1]) throw fail(`lora_A is [${a.join(', ')}] and lora_B is [${b.join(', ')}]: ranks differ`);
  if (a[0] !== r) throw fail(`lora_A is [${a.join(', ')}] but the config gives this module r=${r}`);
}

/** a = Aᵀ [d_in, r], b = s·Bᵀ [r, d_out] from row-major A [r, d_in], B [d_out, r]. */
export function compileLora(A: Float32Array, B: Float32Array, r: number, dIn: number, dOut: number, scale: number): LayerFactors {
  return compileLoraChecked(A, B, r, dIn, dOut, scale).factors;
}

/**
 * compileLora plus whether every compiled value is finite, accumulated in the same loops (x − x is 0 for
 * finite x, NaN for NaN/±Inf; see finite.ts): a NaN or Inf in A or B, or s·B overflowing, gives `finite: false`.
 */
export function compileLoraChecked(A: Float32Array, B: Float32Array, r: number, dIn: number, dOut: number, scale: number): { factors: LayerFactors; finite: boolean } {
  const a = new Float32Array(dIn * r);
  const b = new Float32Array(r * dOut);
  let acc = 0;
  for (let j = 0; j < r; j++) {
    for (let i = 0; i < dIn; i++) {
      const v = A[j * dIn + i]!;
      a[i * r + j] = v;
      acc += v - v;
    }
  }
  for (let o = 0; o < dOut; o++) {
    for (let j = 0; j < r; j++) {
      const v = Math.fround(scale * B[o * r + j]!);
      b[j * dOut + o] = v;
      acc += v - v;
    }
  }
  return { factors: { rank: r, a, b }, finite: acc === 0 };
}
