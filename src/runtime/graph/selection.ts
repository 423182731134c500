/**
 * Which linear layers get a delta branch. Only layers with a branch can take an adapter, and every
 * branch costs a little on every step (see bench/graph-overhead.ts), so this is a deployment choice.
 *
 * - `'attention'`: modules inside an attention block (`…attn…`, `…self_attn…`, `…attention…`):
 *   GPT-2 c_attn / attn.c_proj, Llama q/k/v/o_proj.
 * - `'all-linear'`: every linear layer except the output head (PEFT's `all-linear` also excludes it).
 * - `string[]`: regexes that must match the whole module path (like PEFT's string `target_modules`),
 *   e.g. `['.*\\.(q_proj|v_proj)']`. Only this form can select `lm_head`.
 */
import type { LinearLayer } from './linear-layers.ts';

export type DeltaSelection = 'attention' | 'all-linear' | readonly string[];

/** Chosen from bench/graph-overhead.ts: see the measurement note in that file's header. */
export const DEFAULT_DELTA_SELECTION: DeltaSelection = 'all-linear';

const ATTENTION = /(^|\.)(attn|self_attn|attention|self_attention|cross_attn|encoder_attn)(\.|$)/;
const OUTPUT_HEAD = /(^|\.)(lm_head|embed_out|output_layer)$/;

export type LayerPredicate = (layer: Pick<LinearLayer, 'name'>) => boolean;

export function layerSelector(selection: DeltaSelection | LayerPredicate): LayerPredicate {
  if (typeof selection === 'function') return selection;
  if (selection === 'attention') return (l) => ATTENTION.test(l.name) && !OUTPUT_HEAD.test(l.name);
  if (selection === 'all-linear') return (l) => !OUTPUT_HEAD.test(l.name);
  const patterns = selection.map((p) => new RegExp(`^(?:${p})$`));
  return (l) => patterns.some((re) => re.test(l.name));
}
