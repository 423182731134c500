/** The one error the GGUF reader throws: PatchbayError 400 `invalid_gguf`, naming the file and the problem. */
import { PatchbayError } from '../../errors.ts';

export function invalidGguf(source: string, message: string, cause?: unknown): PatchbayError {
  return new PatchbayError({ status: 400, code: 'invalid_gguf', message: `invalid GGUF ${source}: ${message}`, cause });
}

/** A well-formed file that asks for something the importer does not do (an architecture, a tensor type). */
export function unsupportedGguf(source: string, message: string): PatchbayError {
  return new PatchbayError({ status: 400, code: 'unsupported_gguf', message: `${source}: ${message}` });
}
