/**
 * Hugging Face PEFT `adapter_config.json` for LoRA: the zod schema of the fields Patchbay reads, the
 * features it refuses, and PEFT's module-matching rules (peft/tuners/tuners_utils.py
 * `check_target_module_exists`, peft/utils/other.py `get_pattern_key`), reproduced exactly:
 *
 * - target_modules: a string is a regex that must match the whole module path (`re.fullmatch`);
 *   a list matches a module equal to an entry or ending with `.<entry>`; `"all-linear"` = every linear
 *   layer but the output head. `exclude_modules` uses the same rules and wins.
 *   `layers_to_transform` (list form only, as in PEFT) keeps modules whose first `.<name>.<index>.`
 *   index — or `<layers_pattern>.<index>.` — is listed.
 * - rank_pattern / alpha_pattern: the first key k (in file order) with `^(.*\.)?(k)$` matching the module
 *   path gives r / lora_alpha; else the global `r` / `lora_alpha`.
 * - scale s = lora_alpha / r, or lora_alpha / √r with `use_rslora`.
 * - fan_in_fan_out only changes how PEFT *merges* ΔW into a transposed (GPT-2 Conv1D) weight; the stored
 *   factors are lora_A [r, d_in] and lora_B [d_out, r] either way, and so is the unmerged forward.
 */
import { z } from 'zod';

const strings = z.union([z.array(z.string()), z.string()]);

export const PeftLoraConfigSchema = z.looseObject({
  peft_type: z.string(),
  r: z.number().int().positive(),
  lora_alpha: z.number(),
  target_modules: strings.nullish(),
  exclude_modules: strings.nullish(),
  use_rslora: z.boolean().default(false),
  rank_pattern: z.record(z.string(), z.number().int().positive()).nullish().transform((v) => v ?? {}),
  alpha_pattern: z.record(z.string(), z.number()).nullish().transform((v) => v ?? {}),
  fan_in_fan_out: z.boolean().default(false),
  bias: z.string().default('none'),
  modules_to_save: z.array(z.string()).nullish(),
  use_dora: z.boolean().nullish(),
  base_model_name_or_path: z.string().nullish(),
  layers_to_transform: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  layers_pattern: strings.nullish(),
});
export type PeftLoraConfig = z.infer<typeof PeftLoraConfigSchema>;

/** Config fields that change the math beyond y += s·(x·Aᵀ)·Bᵀ, and how to name them in a 400. */
const UNSUPPORTED: ReadonlyArray<[field: string, active: (v: unknown) => boolean, feature: string]> = [
  ['use_dora', (v) => v === true, 'DoRA'],
  ['bias', (v) => v !== undefined && v !== 'none', 'trained biases'],
  ['lora_bias', (v) => v === true, 'LoRA bias on B'],
  ['modules_to_save', nonEmpty, 'modules_to_save'],
  ['trainable_token_indices', nonEmpty, 'trainable tokens'],
  ['layer_replication', nonEmpty, 'layer replication'],
  ['target_parameters', nonEmpty, 'target_parameters (LoRA on raw parameters)'],
  ['alora_invocation_tokens', nonEmpty, 'activated LoRA (aLoRA)'],
  ['use_qalora', (v) => v === true, 'QA-LoRA'],
  ['use_bdlora', nonEmpty, 'block-diagonal LoRA'],
  ['velora_config', nonEmpty, 'VeLoRA'],
  ['monteclora_config', nonEmpty, 'MonteCLoRA'],
  ['arrow_config', nonEmpty, 'Arrow routing'],
  ['kasa_config', nonEmpty, 'KaSA'],
];

function nonEmpty(v: unknown): boolean {
  if (v === null || v === undefined || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

/** The refused features a raw config uses, e.g. `DoRA (use_dora: true)`. */
export function unsupportedFeatures(raw: Record<string, unknown>): string[] {
  return UNSUPPORTED.filter(([f, active]) => active(raw[f])).map(([f, , name]) => `${name} (${f}: ${JSON.stringify(raw[f])})`);
}

/** Python `re` syntax that JS lacks in the same spelling: named groups `(?P<n>…)` and `(?P=n)`. */
function pyRegex(pattern: string, anchored: (p: string) => string): RegExp {
  return new RegExp(anchored(pattern.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>')));
}

function listMatches(list: readonly string[], module: string): boolean {
  return list.includes(module) || list.some((k) => module.endsWith(`.${k}`));
}

export function isExcluded(cfg: PeftLoraConfig, module: string): boolean {
  const ex = cfg.exclude_modules;
  if (!ex) return false;
  return typeof ex === 'string' ? pyRegex(ex, (p) => `^(?:${p})$`).test(module) : listMatches(ex, module);
}

/**
 * Whether PEFT would have put LoRA on `module`. `isOutputHead` says whether the module is the model's
 * output layer (excluded by `all-linear`). Null target_modules (PEFT's per-architecture default) → true.
 */
export function isTargeted(cfg: PeftLoraConfig, module: string, isOutputHead: boolean): boolean {
  if (isExcluded(cfg, module)) return false;
  const t = cfg.target_modules;
  if (t === null || t === undefined) return true;
  if (t === 'all-linear' || (Array.isArray(t) && t.length === 1 && t[0] === 'all-linear')) return !isOutputHead;
  if (typeof t === 'string') return pyRegex(t, (p) => `^(?:${p})$`).test(module);
  if (!listMatches(t, module)) return false;
  const layers = cfg.layers_to_transform;
  const wanted = layers === null || layers === undefined ? [] : Array.isArray(layers) ? layers : [layers];
  if (wanted.length === 0) return true;
  const patterns = cfg.layers_pattern ? (Array.isArray(cfg.layers_pattern) ? cfg.layers_pattern : [cfg.layers_pattern]) : [];
  const res = patterns.length === 0 ? [/^.*?\.[^.]*\.(\d+)\./] : patterns.map((p) => pyRegex(p, (q) => `^(?:.*?\\.)?${q}\\.(\\d+)\\.`));
  for (const re of res) {
    const m = re.exec(module);
    if (m) return wanted.includes(Number(m[1]));
  }
  return false;
}

/** PEFT `get_pattern_key`: the first pattern key whose `^(.*\.)?(key)$` matches the module. */
export function patternKey(keys: readonly string[], module: string): string | undefined {
  return keys.find((k) => pyRegex(k, (p) => `^(.*\\.)?(${p})$`).test(module));
}

/** Rank, alpha and scale PEFT gives `module`. */
export function moduleScaling(cfg: PeftLoraConfig, module: string): { r: number; alpha: number; scale: number } {
  const rk = patternKey(Object.keys(cfg.rank_pattern), module);
  const ak = patternKey(Object.keys(cfg.alpha_pattern), module);
  const r = rk !== undefined ? cfg.rank_pattern[rk]! : cfg.r;
  const alpha = ak !== undefined ? cfg.alpha_pattern[ak]! : cfg.lora_alpha;
  return { r, alpha, scale: cfg.use_rslora ? alpha / Math.sqrt(r) : alpha / r };
}
