/**
 * Map an exported ONNX node to the Hugging Face module path of the layer it came from, so adapter
 * files (which name PyTorch modules) can find their graph layer.
 *
 *   `/transformer/h.0/attn/c_attn/MatMul`      → `transformer.h.0.attn.c_attn`
 *   `/model/layers.0/self_attn/q_proj/MatMul`  → `model.layers.0.self_attn.q_proj`
 *   `/lm_head/MatMul`                          → `lm_head`
 *
 * Torch's TorchScript exporter (Optimum) scopes node names by module with '/' separators; the last
 * segment is the op (`MatMul`, `MatMul_1`, `Gemm`). When a node name carries no scope (other exporters),
 * the weight initializer name is the next best source (`transformer.h.0.attn.c_attn.weight`); when that is
 * an anonymous `onnx::…`/`val_…` name too, the raw node name is used and no adapter will match it.
 */
export function modulePath(nodeName: string, weightName: string): string {
  const scoped = nodeName.split('/').filter((s) => s.length > 0);
  if (nodeName.startsWith('/') && scoped.length >= 2) return scoped.slice(0, -1).join('.');
  if (/^[A-Za-z_][\w.]*\.weight$/.test(weightName)) return weightName.slice(0, -'.weight'.length);
  return nodeName || weightName;
}
