/**
 * C₀ = (λ²I + μ²K₀K₀ᵀ)⁻¹ through onnxruntime's `com.microsoft.Inverse` (Eigen, float64): a d_k×d_k inverse
 * once per edited layer when a data directory is first used (then it lives in snapshot 0). Measured here on
 * d_k = 1024: ~1.3 s, against ~20 s for a plain-JS Cholesky inverse on this loaded machine. The matrix is
 * SPD and well conditioned (eigenvalues in [λ², λ² + μ²·max eig E[kkᵀ]]), so the LU inverse is accurate
 * (test/edits/rls.test.ts checks it against NumPy at 1e-10).
 */
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { encodeModel, node, tensorValueInfo } from '../runtime/graph/onnx.ts';

const DOUBLE = 11;

export async function inverseF64(a: Float64Array, n: number): Promise<Float64Array> {
  const model = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'inverse',
      node: [{ ...node('Inverse', 'inverse', ['a'], ['c']), domain: 'com.microsoft' }],
      input: [tensorValueInfo('a', DOUBLE, ['n', 'n'])],
      output: [tensorValueInfo('c', DOUBLE, ['n', 'n'])],
    },
  };
  const session = await InferenceSession.create(encodeModel(model as Parameters<typeof encodeModel>[0]));
  try {
    const out = await session.run({ a: new Tensor('float64', a, [n, n]) });
    return Float64Array.from(out['c']!.data as Float64Array);
  } finally {
    await session.release();
  }
}
