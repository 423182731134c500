/** Typed failures of the edits module; the server maps them to HTTP (src/server/routes/admin-edits.ts). */
export type EditErrorCode =
  | 'invalid_edit'
  | 'unknown_layer'
  | 'shape_mismatch'
  | 'non_finite'
  | 'unknown_seq'
  | 'log_mismatch'
  | 'target_empty'
  | 'subject_not_found'
  | 'too_long'
  | 'unsupported_model'
  | 'edits_unavailable'
  /** The worker computing the edit's keys and values died (search-host.ts); nothing was applied. */
  | 'search_failed';

export class EditError extends Error {
  constructor(
    readonly code: EditErrorCode,
    message: string,
    /** The request field at fault, when there is one. */
    readonly param?: string,
  ) {
    super(message);
    this.name = 'EditError';
  }
}
