/**
 * Llama hyper-parameters from GGUF metadata (`<arch>.*` keys written by llama.cpp's convert_hf_to_gguf.py).
 * Llama and Qwen2 (the Llama layout plus q/k/v biases, with Q/K rows that llama.cpp's converter leaves in HF's
 * order) are built; other architectures are refused by name, and so are RoPE variants the graph does not implement.
 */
import { unsupportedGguf, type GgufFile } from '../runtime/gguf/index.ts';

export const SUPPORTED_ARCHITECTURES = ['llama', 'qwen2'] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

export interface LlamaHparams {
  architecture: Architecture;
  name: string;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  contextLength: number;
  rmsEps: number;
  ropeTheta: number;
  /** Embeddings and output head share one matrix (no `output.weight` tensor in the file). */
  tiedEmbeddings: boolean;
}

export function readLlamaHparams(file: GgufFile): LlamaHparams {
  const m = file.metadata;
  const arch = m.string('general.architecture');
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw unsupportedGguf(file.source, `architecture "${arch}" is not supported (the importer builds: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  const k = (s: string) => `${arch}.${s}`;
  const hidden = m.positiveInt(k('embedding_length'));
  const heads = m.positiveInt(k('attention.head_count'));
  const kvHeads = m.positiveInt(k('attention.head_count_kv'), heads);
  const headDim = m.positiveInt(k('attention.key_length'), m.positiveInt(k('rope.dimension_count'), hidden / heads));
  if (heads % kvHeads !== 0) throw unsupportedGguf(file.source, `${heads} attention heads are not a multiple of ${kvHeads} KV heads`);
  if (headDim !== hidden / heads) throw unsupportedGguf(file.source, `head size ${headDim} ≠ embedding ${hidden} / ${heads} heads is not supported`);
  const ropeDims = m.positiveInt(k('rope.dimension_count'), headDim);
  if (ropeDims !== headDim) throw unsupportedGguf(file.source, `partial RoPE (${ropeDims} of ${headDim} dims) is not supported`);
  const scaling = m.string(k('rope.scaling.type'), 'none');
  if (scaling !== 'none') throw unsupportedGguf(file.source, `RoPE scaling "${scaling}" is not supported`);
  if (file.tensors.has('rope_freqs.weight')) {
    throw unsupportedGguf(file.source, 'per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 long context) are not supported');
  }
  const embd = file.tensor('token_embd.weight');
  const vocabSize = m.positiveInt(k('vocab_size'), embd.dims[1] ?? 0);
  if (embd.dims.length !== 2 || embd.dims[0] !== hidden || embd.dims[1] !== vocabSize) {
    throw unsupportedGguf(file.source, `token_embd.weight has dims [${embd.dims}], expected [${hidden}, ${vocabSize}]`);
  }
  return {
    architecture: arch as Architecture,
    name: m.string('general.name', 'gguf-model'),
    vocabSize,
    hidden,
    layers: m.positiveInt(k('block_count')),
    heads,
    kvHeads,
    headDim,
    intermediate: m.positiveInt(k('feed_forward_length')),
    contextLength: m.positiveInt(k('context_length')),
    rmsEps: m.number(k('attention.layer_norm_rms_epsilon')),
    ropeTheta: m.number(k('rope.freq_base'), 10000),
    tiedEmbeddings: !file.tensors.has('output.weight'),
  };
}
