/**
 * Undo llama.cpp's Q/K row permutation.
 *
 * convert_hf_to_gguf.py stores Llama `attn_q` / `attn_k` with the rows of each head reordered for
 * llama.cpp's interleaved RoPE: viewing the HF weight [heads·dim, d_in] as [heads, 2, dim/2, d_in] it swaps
 * the middle axes, so GGUF row h·dim + 2i + j holds HF row h·dim + j·dim/2 + i (i < dim/2, j ∈ {0,1}).
 * HF's rotate_half RoPE (which the ONNX graph uses) needs the original order back; transformers' GGUF
 * loader applies the same inverse (`reverse_permute_weights`). `heads` is n_head for Q and n_head_kv for K.
 */
export function unpermuteRows(w: Float32Array, rows: number, cols: number, heads: number): Float32Array {
  if (rows % heads !== 0 || (rows / heads) % 2 !== 0) {
    throw new Error(`cannot un-permute ${rows} rows over ${heads} heads (need an even head size)`);
  }
  const dim = rows / heads;
  const halfDim = dim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < halfDim; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * dim + 2 * i + j;
        const to = h * dim + j * halfDim + i;
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}
