import { InferenceSession } from 'onnxruntime-node';
import { PatchbayError } from '../errors.ts';

export type Device = 'cpu' | 'cuda';

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; default: ORT's choice (one per core). */
  threads?: number;
}

/** The ORT options every Patchbay session gets (benches build theirs from this too). */
export function ortSessionOptions(opts: SessionOptions): InferenceSession.SessionOptions {
  return {
    executionProviders: [opts.device === 'cuda' ? 'cuda' : 'cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
  };
}

/**
 * Creates an ORT session from model bytes. Weights stay constant initializers so ORT can pre-pack them
 * (feeding weights as inputs measured 1.6–2× slower, see DESIGN.md).
 */
export async function createSession(model: Uint8Array, opts: SessionOptions): Promise<InferenceSession> {
  const options = ortSessionOptions(opts);
  try {
    return await InferenceSession.create(model, options);
  } catch (cause) {
    if (opts.device === 'cuda') {
      throw new PatchbayError({
        status: 503,
        code: 'cuda_unavailable',
        message:
          'PATCHBAY_DEVICE=cuda but the CUDA execution provider could not start: install the CUDA build of ' +
          'onnxruntime-node (README, "GPU (CUDA)") on a machine with an NVIDIA driver and CUDA 12. ' +
          `ORT said: ${(cause as Error).message}`,
        cause,
      });
    }
    throw new PatchbayError({ status: 400, code: 'invalid_model', message: `ORT could not load the model: ${(cause as Error).message}`, cause });
  }
}
