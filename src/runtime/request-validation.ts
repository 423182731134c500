/**
 * Checks a generation request at the runtime's own door (`Scheduler.submit`), not only over HTTP: any
 * embedder, bench or future route gets the same guarantees, and a bad value fails that request alone
 * instead of a batched run that carries other tenants' rows.
 */
import { MAX_STOP_CHARS, MAX_STOPS } from './stop-scan.ts';
import type { GenerationRequest } from './types.ts';

/** A request the runtime refuses; `param` names the runtime field. The server maps it to a 400. */
export class InvalidGenerationError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidGenerationError';
  }
}

export function validateGeneration(request: GenerationRequest, vocabSize: number | undefined): void {
  const { promptIds, sampling } = request;
  for (let i = 0; i < promptIds.length; i++) {
    const id = promptIds[i]!;
    if (!Number.isInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
      throw new InvalidGenerationError('promptIds', `token id ${id} at position ${i} is not in the vocabulary [0, ${vocabSize ?? '∞'})`);
    }
  }
  const s = sampling;
  // 0 is allowed: it scores the prompt without generating (promptLogprobs).
  if (!Number.isInteger(s.maxTokens) || s.maxTokens < 0) throw new InvalidGenerationError('maxTokens', `maxTokens must be an integer ≥ 0, got ${s.maxTokens}`);
  for (const id of s.stopTokenIds ?? []) {
    if (!Number.isInteger(id) || id < 0) throw new InvalidGenerationError('stopTokenIds', `stop token ids must be integers ≥ 0, got ${id}`);
  }
  if (!Number.isFinite(s.temperature) || s.temperature < 0) throw new InvalidGenerationError('temperature', `temperature must be finite and ≥ 0, got ${s.temperature}`);
  if (!(s.topP > 0 && s.topP <= 1)) throw new InvalidGenerationError('topP', `topP must be in (0, 1], got ${s.topP}`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw new InvalidGenerationError('topK', `topK must be an integer ≥ 0, got ${s.topK}`);
  if (s.seed !== undefined && !Number.isSafeInteger(s.seed)) throw new InvalidGenerationError('seed', `seed must be a safe integer, got ${s.seed}`);
  if (s.stop.length > MAX_STOPS) throw new InvalidGenerationError('stop', `at most ${MAX_STOPS} stop strings, got ${s.stop.length}`);
  for (const stop of s.stop) {
    if (stop.length === 0 || stop.length > MAX_STOP_CHARS) {
      throw new InvalidGenerationError('stop', `stop strings must have 1 to ${MAX_STOP_CHARS} characters, got ${stop.length}`);
    }
  }
}
