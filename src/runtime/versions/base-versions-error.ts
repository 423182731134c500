/** Typed failures of a publish; the server maps them to HTTP (nothing changed when one is thrown). */
export class BaseVersionError extends Error {
  constructor(
    readonly code: 'unknown_initializer' | 'shape_mismatch' | 'conflict' | 'non_finite' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'BaseVersionError';
  }
}
