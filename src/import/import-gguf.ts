/**
 * GGUF file → Patchbay model directory: onnx/model.onnx (the decoder in the project's ONNX contract),
 * config.json, generation_config.json, tokenizer.json, tokenizer_config.json and chat_template.jinja.
 * Everything is validated and built in memory first; files are written only when all of it succeeded, into
 * a fresh temporary directory that is renamed onto `outDir` (an existing model directory is replaced whole).
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { GgufFile } from '../runtime/gguf/index.ts';
import type { WeightsMode } from './emit-linear.ts';
import type { ImportAccuracy } from './quant/nbits-linear.ts';
import { readLlamaHparams, type LlamaHparams } from './llama-hparams.ts';
import { buildLlamaOnnx } from './llama-onnx.ts';
import { DEFAULT_ATTENTION, type AttentionMode } from './attention-core.ts';
import { buildTokenizerFiles } from './tokenizer-files.ts';

export interface ImportResult {
  outDir: string;
  hparams: LlamaHparams;
  onnxBytes: number;
  tensorTypes: Record<string, number>;
  seconds: number;
}

export interface ImportOptions {
  /** MatMulNBits `accuracy_level` written into q4/q8 graphs (0 = float32 compute, 4 = int8 activations). */
  accuracyLevel?: ImportAccuracy;
  /** Attention core (attention-core.ts): `append` (default, runtime-owned KV buffers) or `concat` (the contract's Concat). */
  attention?: AttentionMode;
}

/**
 * What the checkpoint calls itself (config.json `_name_or_path`), so adapters naming their base are matched
 * to it: the file name without llama.cpp's quantization suffix (`SmolLM2-135M-Instruct.Q4_1.gguf` →
 * `SmolLM2-135M-Instruct`, as PEFT's `base_model_name_or_path` "HuggingFaceTB/SmolLM2-135M-Instruct" ends).
 */
export function ggufModelName(ggufPath: string): string {
  return basename(ggufPath).replace(/\.gguf$/i, '').replace(/[.-](?:I?Q\d[\w]*|F16|F32|BF16)$/i, '');
}

export async function importGguf(ggufPath: string, outDir: string, weights: WeightsMode, opts: ImportOptions = {}): Promise<ImportResult> {
  const started = performance.now();
  const file = GgufFile.open(ggufPath);
  try {
    const hp = readLlamaHparams(file);
    const tok = buildTokenizerFiles(file, hp.contextLength);
    const attention = opts.attention ?? DEFAULT_ATTENTION;
    const model = buildLlamaOnnx(file, hp, weights, { ...(opts.accuracyLevel !== undefined ? { accuracyLevel: opts.accuracyLevel } : {}), attention });
    const tensorTypes: Record<string, number> = {};
    for (const t of file.tensors.values()) tensorTypes[t.typeName] = (tensorTypes[t.typeName] ?? 0) + 1;

    const config = {
      _name_or_path: ggufModelName(ggufPath),
      architectures: [hp.architecture === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
      model_type: hp.architecture,
      vocab_size: hp.vocabSize,
      hidden_size: hp.hidden,
      intermediate_size: hp.intermediate,
      num_hidden_layers: hp.layers,
      num_attention_heads: hp.heads,
      num_key_value_heads: hp.kvHeads,
      head_dim: hp.headDim,
      max_position_embeddings: hp.contextLength,
      rms_norm_eps: hp.rmsEps,
      rope_theta: hp.ropeTheta,
      hidden_act: 'silu',
      attention_bias: hp.architecture === 'qwen2',
      mlp_bias: false,
      tie_word_embeddings: hp.tiedEmbeddings,
      bos_token_id: tok.bosTokenId ?? null,
      eos_token_id: tok.eosTokenId ?? null,
      pad_token_id: tok.padTokenId ?? null,
      torch_dtype: 'float32',
      patchbay_import: { source: basename(ggufPath), name: hp.name, weights, attention, gguf_tensor_types: tensorTypes },
    };
    const generation = { bos_token_id: tok.bosTokenId ?? null, eos_token_id: tok.eosTokenId ?? null, pad_token_id: tok.padTokenId ?? null, do_sample: false };

    const target = resolve(outDir);
    const tmp = join(dirname(target), `.${basename(target)}.importing-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(join(tmp, 'onnx'), { recursive: true });
    try {
      await writeFile(join(tmp, 'onnx', 'model.onnx'), model.bytes);
      await writeFile(join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
      await writeFile(join(tmp, 'generation_config.json'), JSON.stringify(generation, null, 2) + '\n');
      await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson));
      await writeFile(join(tmp, 'tokenizer_config.json'), JSON.stringify(tok.tokenizerConfig, null, 2) + '\n');
      // Imported weights come from a registry or a user's disk: never commit them by accident.
      await writeFile(join(tmp, '.gitignore'), '# written by npm run model:import\n*\n');
      if (tok.chatTemplate !== undefined) await writeFile(join(tmp, 'chat_template.jinja'), tok.chatTemplate);
      if (existsSync(target)) await rm(target, { recursive: true });
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return { outDir: target, hparams: hp, onnxBytes: model.bytes.byteLength, tensorTypes, seconds: (performance.now() - started) / 1000 };
  } finally {
    file.close();
  }
}
