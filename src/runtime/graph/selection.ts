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

/**
 * Default: every linear layer but the head. Measured with bench/graph-overhead.ts (tiny-gpt2, ORT 1.30
 * CPU, 1 thread, decode step with 64 cached tokens; ratios vs the un-rewritten model, one run):
 *
 *                         b=1 r=0   b=1 r=16   b=8 r=0   b=8 r=16   prefill 64 r=0
 *     attention            1.05      1.07       1.02      1.04       1.03
 *     all-linear           1.14      1.11       1.10      1.28       1.03
 *
 * The r=0 cost is per-node overhead (3 nodes per branch, ~4 µs each), fixed per layer, so it shrinks
 * relative to the step as models grow. `all-linear` is the default because adapters commonly target
 * MLP layers (PEFT `all-linear`, S²FT's FFN channels) and an adapter whose layers have no branch cannot
 * be served at all; deployments serving attention-only adapters should choose `attention`.
 */
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
