/** The tiny mixed-type Llama GGUF and its references, written by tools/make_gguf_fixture.py. */
import { readFileSync } from 'node:fs';

export const GGUF_FIXTURE = 'test/fixtures/tiny-gguf/tiny-llama-mixed.gguf';
/** Untied output.weight, default alignment, 4 query heads per KV head (reference-untied.json). */
export const GGUF_UNTIED_FIXTURE = 'test/fixtures/tiny-gguf/tiny-llama-untied.gguf';

export interface GgufReference {
  tolerance: number;
  vocab_size: number;
  config: { hidden: number; layers: number; heads: number; kv_heads: number; inter: number; ctx: number; theta: number; eps: number };
  tensors: Record<string, { type: string; shape: number[]; sha256: string; head: number[] }>;
  prompts: Array<{
    text: string;
    input_ids: number[];
    last_logits: number[];
    decode_steps: Array<{ token: number; position: number; logits: number[] }>;
    all_logits?: number[][];
  }>;
}

/** Qwen2: q/k/v biases, Q/K rows in HF order, the `qwen2` pre-tokenizer (reference-qwen2.json). */
export const GGUF_QWEN2_FIXTURE = 'test/fixtures/tiny-gguf/tiny-qwen2.gguf';

export function loadReference(variant: 'mixed' | 'untied' | 'qwen2' = 'mixed'): GgufReference {
  const file = variant === 'mixed' ? 'reference.json' : `reference-${variant}.json`;
  return JSON.parse(readFileSync(`test/fixtures/tiny-gguf/${file}`, 'utf8')) as GgufReference;
}
