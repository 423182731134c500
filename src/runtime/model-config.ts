import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { PatchbayError } from '../errors.ts';

/** What the runtime needs to know about a decoder export, read from its Hugging Face `config.json`. */
export interface ModelInfo {
  id: string;
  dir: string;
  onnxPath: string;
  architecture: string;
  contextLength: number;
  vocabSize: number;
  eosTokenIds: number[];
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /**
   * What the checkpoint calls itself: config.json `_name_or_path` (transformers' field; the GGUF importer
   * writes the model's Hugging Face id there). Adapters whose `base_model_name_or_path` names it are
   * recognised as made for this base (src/adapters/attach-target.ts checkBaseModel).
   */
  nameOrPath?: string;
}

const HfConfig = z
  .object({
    model_type: z.string(),
    vocab_size: z.number().int().positive(),
    // GPT-2 names
    n_layer: z.number().int().positive().optional(),
    n_head: z.number().int().positive().optional(),
    n_embd: z.number().int().positive().optional(),
    n_positions: z.number().int().positive().optional(),
    // Llama names
    num_hidden_layers: z.number().int().positive().optional(),
    num_attention_heads: z.number().int().positive().optional(),
    num_key_value_heads: z.number().int().positive().optional(),
    hidden_size: z.number().int().positive().optional(),
    head_dim: z.number().int().positive().optional(),
    max_position_embeddings: z.number().int().positive().optional(),
    eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
    _name_or_path: z.string().nullish(),
  })
  .loose();

/** Optimum writes `model.onnx` or `decoder_model_merged.onnx`, transformers.js puts them under `onnx/`. */
const ONNX_CANDIDATES = ['onnx/model.onnx', 'model.onnx', 'onnx/decoder_model_merged.onnx', 'decoder_model_merged.onnx'];

function required(value: number | undefined, what: string, dir: string): number {
  if (value === undefined) {
    throw new PatchbayError({ status: 400, code: 'invalid_model', message: `${dir}/config.json lacks ${what}` });
  }
  return value;
}

export async function readModelInfo(modelDir: string, id?: string): Promise<ModelInfo> {
  const dir = resolve(modelDir);
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) {
    throw new PatchbayError({ status: 400, code: 'invalid_model', message: `no config.json in model directory ${dir}` });
  }
  const onnx = ONNX_CANDIDATES.map((p) => join(dir, p)).find((p) => existsSync(p));
  if (!onnx) {
    throw new PatchbayError({
      status: 400,
      code: 'invalid_model',
      message: `no ONNX decoder in ${dir} (looked for ${ONNX_CANDIDATES.join(', ')})`,
    });
  }
  const parsed = HfConfig.safeParse(JSON.parse(await readFile(configPath, 'utf8')));
  if (!parsed.success) {
    throw new PatchbayError({ status: 400, code: 'invalid_model', message: `${configPath}: ${parsed.error.message}` });
  }
  const c = parsed.data;
  const numLayers = required(c.n_layer ?? c.num_hidden_layers, 'n_layer/num_hidden_layers', dir);
  const numHeads = required(c.n_head ?? c.num_attention_heads, 'n_head/num_attention_heads', dir);
  const hidden = required(c.n_embd ?? c.hidden_size, 'n_embd/hidden_size', dir);
  const generationEos = await readGenerationEos(dir);
  const eos = generationEos ?? c.eos_token_id ?? [];
  return {
    id: id ?? basename(dir),
    dir,
    onnxPath: onnx,
    architecture: c.model_type,
    contextLength: required(c.n_positions ?? c.max_position_embeddings, 'n_positions/max_position_embeddings', dir),
    vocabSize: c.vocab_size,
    eosTokenIds: Array.isArray(eos) ? eos : [eos],
    numLayers,
    numKvHeads: c.num_key_value_heads ?? numHeads,
    headDim: c.head_dim ?? hidden / numHeads,
    ...(c._name_or_path ? { nameOrPath: c._name_or_path } : {}),
  };
}

async function readGenerationEos(dir: string): Promise<number | number[] | undefined> {
  const path = join(dir, 'generation_config.json');
  if (!existsSync(path)) return undefined;
  const g = JSON.parse(await readFile(path, 'utf8')) as { eos_token_id?: number | number[] | null };
  return g.eos_token_id ?? undefined;
}
