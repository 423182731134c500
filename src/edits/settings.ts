/** RLSEdit settings: their defaults, and the few constants the PyTorch reference (tools/edits/) shares. */

/** Context prefixes the key is averaged over and the value is searched under; "{}" is the prompt alone (ours). */
export const CONTEXT_TEMPLATES = ['{}', 'Hark. {}', 'Now, {}', 'I say, {}', 'Then. {}'] as const;

/** The value search: Adam on δ (ROME/MEMIT-style). Must equal tools/edits/make_fixture.py. */
export interface ValueSearch {
  steps: number;
  lr: number;
  /** Loss += weightDecay·‖δ‖²/h̄² (h̄: mean norm of the hidden state δ is added to). */
  weightDecay: number;
  /** ‖δ‖ ≤ clamp·h̄ after every step. */
  clamp: number;
  /** Stop once the mean target NLL is below this. */
  stopNll: number;
}

export const DEFAULT_VALUE_SEARCH: ValueSearch = { steps: 25, lr: 0.5, weightDecay: 0.5, clamp: 4, stopNll: 0.05 };

/** Where keys are taken (compute.ts): the subject's last token, or that plus every target-predicting position. */
export type KeyPositions = 'subject' | 'subject+targets';

export interface EditSettings {
  /** Key positions for edits that name a subject (without one: the target-predicting positions). */
  keys: KeyPositions;
  /** Edited layers (HF module paths); default: every layer the model's edit_stats.safetensors covers. */
  layers?: readonly string[];
  /** λ: pull toward W₀. */
  lambda: number;
  /** μ: pull toward the anchor mapping on typical keys (K₀K₀ᵀ := E[kkᵀ]). */
  mu: number;
  valueSearch: ValueSearch;
  /** Longest prompt / target accepted, in characters. */
  maxPromptChars: number;
  maxTargetChars: number;
  /** Longest target, in tokens (the value search costs one forward per target token per context). */
  maxTargetTokens: number;
  /** A snapshot of W and C after this many edits (restart/rollback replay at most this many records). */
  snapshotEvery: number;
  keepSnapshots: number;
}

export const DEFAULT_EDIT_SETTINGS: EditSettings = {
  keys: 'subject+targets',
  lambda: 1,
  mu: 1,
  valueSearch: DEFAULT_VALUE_SEARCH,
  maxPromptChars: 1000,
  maxTargetChars: 200,
  maxTargetTokens: 16,
  snapshotEvery: 250,
  keepSnapshots: 4,
};
