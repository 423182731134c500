/**
 * The seam between the edit computation (compute.ts) and a model family's hand-written upper stack: the
 * blocks above the top edited layer, the final norm and the LM head, with ∂loss/∂δ for the value search.
 * Implemented by Gpt2Upper (gpt2-upper.ts) and LlamaUpper (llama-upper.ts).
 */
export interface TargetToken {
  /** Position whose logits predict `token`. */
  pos: number;
  token: number;
}

export interface UpperStack {
  readonly dModel: number;
  /**
   * Mean NLL of `targets` when δ_a (row a of `delta`, [u, D]) is added to `hidden` [t, D] (the residual stream
   * after the top edited block, float32 from the probe) at position `at[a]`; with `grad`, ∂NLL/∂δ [u, D].
   */
  lossAndGrad(hidden: Float32Array, t: number, at: readonly number[], delta: Float64Array, targets: readonly TargetToken[], grad: boolean): { nll: number; grad: Float64Array };
}
