import { InferenceSession, type Tensor } from 'onnxruntime-node';
import { PatchbayError } from '../errors.ts';

export type Device = 'cpu' | 'cuda';

/**
 * What the engine needs of a session: an ORT InferenceSession on this thread satisfies it, and so does a
 * session hosted by a worker thread (session-host.ts).
 */
export interface ModelSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, Tensor>, fetches: string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

export interface SessionOptions {
  device: Device;
  /** Intra-op threads; default: ORT's choice (one per core). */
  threads?: number;
  /**
   * Whether ORT's pool threads spin (busy-wait) between parallel sections and after a run instead of
   * sleeping; default true, ORT's own default. Spinning saves the wake-up of a sleeping worker on each of the
   * decode step's parallel sections, but a spinning thread holds a core: where cores are shared (other
   * processes, CPU quotas, Node's own thread next to ORT's on a 2-core host) it measured up to 5× slower
   * (BENCHMARKS.md, "q4 decode speed"). PATCHBAY_ORT_SPINNING=off turns it off.
   */
  spinning?: boolean;
}

/** The ORT options every Patchbay session gets (benches build theirs from this too). */
export function ortSessionOptions(opts: SessionOptions): InferenceSession.SessionOptions {
  return {
    executionProviders: [opts.device === 'cuda' ? 'cuda' : 'cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
    // onnxruntime-node flattens `extra` into session config entries: session.intra_op.allow_spinning = "0".
    ...(opts.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } } : {}),
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
