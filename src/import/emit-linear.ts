/**
 * The one place where a linear layer of the imported model becomes ONNX: every projection (q/k/v/o,
 * gate/up/down, lm_head) goes through `emitLinear`, so a weight format is added here and nowhere else.
 */
import { dequantizeTensor, unpermuteRows, type GgufFile, type GgufTensorInfo } from '../runtime/gguf/index.ts';
import { modulePath } from '../runtime/graph/module-path.ts';
import type { GraphBuilder } from './graph-builder.ts';
import { emitterFor, levelFor, nbitsPlanes, packable, sharedTable, DEFAULT_IMPORT_ACCURACY } from './quant/nbits-linear.ts';
import type { ImportAccuracy } from './quant/nbits-linear.ts';

/** How linear weights are stored in the ONNX graph (`--weights`). */
export const WEIGHTS_MODES = ['f32', 'q4', 'q8'] as const;
export type WeightsMode = (typeof WEIGHTS_MODES)[number];
/** The modes emitLinear implements today; the others are refused by the CLI with a clear message. */
export const IMPLEMENTED_WEIGHTS_MODES: readonly WeightsMode[] = ['f32', 'q4', 'q8'];

/** A GGUF matrix that is the weight of one `nn.Linear`. */
export interface LinearWeight {
  file: GgufFile;
  /** GGML dims [d_in, d_out] (innermost first), i.e. HF `nn.Linear.weight` [d_out, d_in] row-major. */
  info: GgufTensorInfo;
  /**
   * Llama attn_q / attn_k: rows are in llama.cpp's RoPE order and must be un-permuted over this many heads
   * (n_head for Q, n_head_kv for K) — see runtime/gguf/llama-permute.ts. Whole rows move, so quantized
   * blocks (which never cross a row) can be un-permuted as bytes before any repacking.
   */
  unpermuteHeads?: number;
}

/** The weight as HF `nn.Linear.weight`: float32 [d_out, d_in] row-major, rows in HF order. */
export function linearWeightRows(w: LinearWeight): { data: Float32Array; dIn: number; dOut: number } {
  const [dIn, dOut] = w.info.dims as [number, number];
  let data = dequantizeTensor(w.file, w.info);
  if (w.unpermuteHeads) data = unpermuteRows(data, dOut, dIn, w.unpermuteHeads);
  return { data, dIn, dOut };
}

/**
 * Emit `y = x · Wᵀ` for the HF module at `scope` (e.g. `/model/layers.0/self_attn/q_proj`) and return y.
 *
 * Contract with the rest of Patchbay (tools/README.md "ONNX contract"):
 *   - f32: one node `${scope}/MatMul`, inputs (x [batch, seq, d_in], W), W a float32 initializer
 *     [d_in, d_out] named `${module path}.weight` (`model.layers.0.self_attn.q_proj.weight`). The graph
 *     rewrite (runtime/graph/linear-layers.ts) finds exactly this pattern and attaches adapter deltas.
 *   - q4 / q8: `com.microsoft.MatMulNBits` on the GGUF's own blocks (src/import/quant/: rows un-permuted
 *     as bytes, no re-quantization; Q4_1/Q4_K offsets as a blocksum correction that is not a linear layer),
 *     node `${scope}/MatMulNBits` so modulePath() still yields the HF module and the rewrite attaches deltas
 *     to it. Float tensors (and types without an exact MatMulNBits form) fall back to the f32 form. A tied
 *     head reuses the table the quantized embedding lookup already stored (one copy).
 * `outputName` names the layer's output tensor (`logits` for lm_head: runtime/graph/logits-slice.ts finds the
 * projection that produces the `logits` output and slices its input, so lm_head must produce it directly).
 * `weightName` lets a caller share the weight (tied embeddings read `lm_head.weight` through a Gather).
 */
export function emitLinear(
  b: GraphBuilder,
  scope: string,
  x: string,
  w: LinearWeight,
  mode: WeightsMode,
  outputName?: string,
  accuracyLevel: ImportAccuracy = DEFAULT_IMPORT_ACCURACY,
): { output: string; weightName: string } {
  if (mode !== 'f32' && packable(w.info)) {
    const prefix = modulePath(`${scope}/MatMulNBits`, '');
    const shared = sharedTable(b, w.info.name);
    const planes = shared?.planes ?? nbitsPlanes(w.file, w.info, mode, w.unpermuteHeads);
    const output = outputName ?? `${scope}/MatMulNBits_output_0`;
    const level = levelFor(accuracyLevel, planes.weight.bits);
    emitterFor(b).linear({ scope, prefix, input: x, output, ...planes, accuracyLevel: level, ...(shared ? { shared: shared.names } : {}) });
    return { output, weightName: shared?.names[0]!.data ?? `${prefix}.nbits.B` };
  }
  const { data, dIn, dOut } = linearWeightRows(w);
  const weightName = `${modulePath(`${scope}/MatMul`, '')}.weight`;
  b.floatInit(weightName, [dIn, dOut], transpose(data, dOut, dIn));
  return { output: b.op1(scope, 'MatMul', [x, weightName], {}, outputName ? { outputName } : {}), weightName };
}

/** [rows, cols] row-major → [cols, rows], blocked for cache reuse on large matrices. */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c]!;
    }
  }
  return out;
}
