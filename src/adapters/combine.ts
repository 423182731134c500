/**
 * Exact Task-Arithmetic combination of delta bindings: ΔW = Σ_i w_i·ΔW_i, by concatenating factors
 * along the rank (never averaging A and B separately, which would add cross terms a_i·b_j):
 *
 *     a' = [a_1 | a_2 | … | a_n]          [d_in, Σr_i]   (columns side by side)
 *     b' = [w_1·b_1; w_2·b_2; …; w_n·b_n]  [Σr_i, d_out]  (rows stacked)
 *
 * so x·a'·b' = Σ_i w_i·(x·a_i)·b_i. A layer absent from some inputs takes only the others' terms;
 * w_i may be negative (task negation) and a weight of 0 drops that input from the layer.
 */
import type { DeltaBinding, LayerFactors } from '../runtime/types.ts';

export interface WeightedBinding {
  binding: DeltaBinding;
  weight: number;
}

/** Canonical key of a combination, e.g. `mix(comedy*0.7+tragedy*0.5)` (input order kept: it is the request's). */
export function combinationKey(parts: readonly WeightedBinding[]): string {
  return `mix(${parts.map((p) => `${p.binding.key}*${p.weight}`).join('+')})`;
}

export function combineBindings(parts: readonly WeightedBinding[], key = combinationKey(parts)): DeltaBinding {
  const names = [...new Set(parts.flatMap((p) => [...p.binding.layers.keys()]))];
  const layers = new Map<string, LayerFactors>();
  for (const name of names) {
    const terms = parts
      .map((p) => ({ f: p.binding.layers.get(name), w: p.weight, key: p.binding.key }))
      .filter((t): t is { f: LayerFactors; w: number; key: string } => t.f !== undefined && t.f.rank > 0 && t.w !== 0);
    if (terms.length === 0) continue;
    const dIn = terms[0]!.f.a.length / terms[0]!.f.rank;
    const dOut = terms[0]!.f.b.length / terms[0]!.f.rank;
    for (const t of terms) {
      if (t.f.a.length !== dIn * t.f.rank || t.f.b.length !== t.f.rank * dOut) {
        throw new Error(`cannot combine ${t.key} into ${name}: factors are not [${dIn}, r] / [r, ${dOut}]`);
      }
    }
    const R = terms.reduce((s, t) => s + t.f.rank, 0);
    const a = new Float32Array(dIn * R);
    const b = new Float32Array(R * dOut);
    let col = 0;
    for (const { f, w } of terms) {
      for (let i = 0; i < dIn; i++) a.set(f.a.subarray(i * f.rank, (i + 1) * f.rank), i * R + col);
      for (let t = 0; t < f.rank * dOut; t++) b[col * dOut + t] = w * f.b[t]!;
      col += f.rank;
    }
    layers.set(name, { rank: R, a, b });
  }
  return { key, layers };
}
