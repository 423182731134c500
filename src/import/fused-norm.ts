/**
 * RMSNorm as one ONNX node. HF's LlamaRMSNorm, y = w · x / √(mean(x²) + ε) over the last axis ([B, S, d]),
 * spelled out as Mul/ReduceMean/Add/Sqrt/Reciprocal/Mul/Mul costs seven kernels (and seven dispatches per
 * norm, 61 norms in SmolLM2) because ORT's online optimizer does not fuse that spelling (it only matches
 * Pow(x, 2) → ReduceMean → Add → Sqrt → Div). ORT's `SimplifiedLayerNormalization` (ONNX domain, a contrib
 * schema of ORT's, the op ORT's own fusion would produce) computes the same in one kernel, in float32
 * (stash_type 1): y = w · x · (mean(x²) + ε)^(−1/2).
 */
import type { GraphBuilder } from './graph-builder.ts';

export function emitRmsNorm(b: GraphBuilder, scope: string, x: string, weightName: string, weight: Float32Array, eps: number): string {
  const w = b.floatInit(weightName, [weight.length], weight);
  return b.op1(scope, 'SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: eps, stash_type: 1 });
}
