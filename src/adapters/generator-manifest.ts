/**
 * `generator.json`: what a generator directory declares (README, "Generators"). Parsed with zod; every
 * problem is a 400 naming the field, before the ONNX file is opened.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { invalidAdapter } from './attach-target.ts';

export const GENERATOR_MANIFEST = 'generator.json';

/** A file inside the generator directory: a plain name, never a path out of it. */
const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a file name inside the generator directory (no path)');

export const StringConditionSchema = z.strictObject({
  /** The base model's own token embeddings of the string's tokens, averaged: e = mean_t E[t], [d_model]. */
  method: z.literal('mean_token_embedding'),
  /** Case folding before tokenizing (the trained fixture learned upper-case speaker names). */
  case: z.enum(['as-is', 'upper', 'lower']).default('as-is'),
  /**
   * c = W·e (+ bias): a safetensors file with `weight` [d_c, d_model] and optionally `bias` [d_c].
   * null: c = e, which needs condition_dim = d_model.
   */
  projection: fileName.nullable().default(null),
});
export type StringConditionSpec = z.infer<typeof StringConditionSchema>;

export const GeneratorManifestSchema = z.strictObject({
  format: z.literal('patchbay-generator'),
  version: z.literal(1),
  /** The base the generator was trained against (compared like PEFT's base_model_name_or_path). */
  base_model: z.string().min(1),
  onnx: fileName.default('generator.onnx'),
  condition_dim: z.number().int().min(1).max(65_536),
  rank: z.number().int().min(1).max(4096),
  /** Folded into B at compile time, like LoRA's alpha/r: ΔW = scale·B(c)·A(c). */
  scale: z.number().finite().default(1),
  /** Module paths of the base (e.g. `transformer.h.2.attn.c_attn`); each has outputs `<m>.A`, `<m>.B`. */
  targets: z.array(z.string().min(1)).min(1).max(4096).refine((t) => new Set(t).size === t.length, 'targets must not repeat'),
  /** How a string condition becomes a vector; absent = the generator takes vector conditions only. */
  string_condition: StringConditionSchema.optional(),
  /** Conditions worth trying, shown by GET /admin/generators. */
  examples: z.array(z.string().min(1).max(256)).max(64).default([]),
  description: z.string().max(4096).optional(),
});
export type GeneratorManifest = z.infer<typeof GeneratorManifestSchema>;

export async function readGeneratorManifest(dir: string, id: string): Promise<GeneratorManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, GENERATOR_MANIFEST), 'utf8');
  } catch (e) {
    throw invalidAdapter(id, `${GENERATOR_MANIFEST} cannot be read (${(e as Error).message})`, 'invalid_generator');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalidAdapter(id, `${GENERATOR_MANIFEST} is not valid JSON (${(e as Error).message})`, 'invalid_generator');
  }
  const parsed = GeneratorManifestSchema.safeParse(raw);
  if (!parsed.success) throw invalidAdapter(id, `${GENERATOR_MANIFEST}: ${z.prettifyError(parsed.error).replace(/\n/g, '; ')}`, 'invalid_generator');
  return parsed.data;
}
