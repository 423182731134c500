/**
 * Test data, not mocks: real Hugging Face PEFT LoRA directories (adapter_config.json + safetensors written
 * with Patchbay's own writer) shaped for a real model graph, and that graph's attach target.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachTarget, type AttachTarget } from '../../src/adapters/index.ts';
import { encodeSafetensors, type TensorToWrite } from '../../src/adapters/safetensors-writer.ts';
import { addDeltaBranches, type DeltaSelection } from '../../src/runtime/graph/index.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const modelDir = (name: 'tiny-gpt2' | 'tiny-llama') => path.join(REPO_ROOT, 'models', name);

/** The attach target the server would build for `model` (the real ONNX graph, rewritten; no session). */
export async function realTarget(model: 'tiny-gpt2' | 'tiny-llama', selection: DeltaSelection = 'all-linear'): Promise<AttachTarget> {
  const rewrite = addDeltaBranches(new Uint8Array(await readFile(path.join(modelDir(model), 'onnx', 'model.onnx'))), selection);
  return attachTarget(rewrite, String(selection), [model]);
}

const created: string[] = [];

export async function tempDir(prefix = 'patchbay-adapters-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** For `after()`: removes every directory `tempDir` made in this test file. */
export async function removeTempDirs(): Promise<void> {
  await Promise.all(created.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Deterministic uniform values in [-0.5, 0.5). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export interface LoraSpec {
  /** PEFT target_modules entries (module-name suffixes such as `q_proj`). */
  modules: readonly string[];
  rank: number;
  seed: number;
  /** lora_alpha; the scale is alpha / rank. Default: rank (scale 1). */
  alpha?: number;
  baseModel?: string;
}

/** Writes a PEFT LoRA with random, nonzero A and B (so, unlike a fresh PEFT init, it changes outputs). */
export async function writeLora(dir: string, target: AttachTarget, spec: LoraSpec): Promise<string> {
  const next = rng(spec.seed);
  const rand = (n: number) => Float32Array.from({ length: n }, next);
  const tensors: Record<string, TensorToWrite> = {};
  for (const layer of target.layers.values()) {
    if (!spec.modules.some((m) => layer.name.endsWith(`.${m}`))) continue;
    const { rank: r } = spec;
    tensors[`base_model.model.${layer.name}.lora_A.weight`] = { dtype: 'F32', shape: [r, layer.dIn], data: rand(r * layer.dIn) };
    tensors[`base_model.model.${layer.name}.lora_B.weight`] = { dtype: 'F32', shape: [layer.dOut, r], data: rand(layer.dOut * r) };
  }
  if (Object.keys(tensors).length === 0) throw new Error(`no layer of the target matches ${spec.modules.join(', ')}`);
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: spec.rank,
    lora_alpha: spec.alpha ?? spec.rank,
    target_modules: [...spec.modules],
    bias: 'none',
    use_rslora: false,
    fan_in_fan_out: false,
    modules_to_save: null,
    ...(spec.baseModel ? { base_model_name_or_path: spec.baseModel } : {}),
  };
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2));
  await writeFile(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors));
  return dir;
}

/** A directory that claims to be a LoRA but whose safetensors header is cut short. */
export async function writeCorruptLora(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 4, target_modules: ['q_proj'] }));
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setBigUint64(0, 1_000n, true); // header length points past the end of the file
  await writeFile(path.join(dir, 'adapter_model.safetensors'), bytes);
  return dir;
}

/** Bytes of the compiled factors of `writeLora(…, spec)`: a [dIn, r] + b [r, dOut], float32. */
export function loraBytes(target: AttachTarget, spec: Pick<LoraSpec, 'modules' | 'rank'>): number {
  let n = 0;
  for (const l of target.layers.values()) if (spec.modules.some((m) => l.name.endsWith(`.${m}`))) n += spec.rank * (l.dIn + l.dOut);
  return n * 4;
}
