/** RLSEdit settings: their defaults, and the few constants the PyTorch reference (tools/edits/) shares. */

/** Context prefixes the key is averaged over and the value is searched under; "{}" is the prompt alone (ours). */
export const CONTEXT_TEMPLATES = ['{}', 'Hark. {}', 'Now, {}', 'I say, {}', 'Then. {}'] as const;

/**
 * User turns of the chat contexts ("{}" is the prompt): the prompt is rendered through the model's chat template
 * as a user turn and then starts the assistant's answer, "<user turn>{prompt}" → target, so keys and values are
 * also taken where a chat answer states the fact (SmolLM2 answers "What is the capital of France?" with "The
 * capital of France is …"). The edit carries no question, so the user turn is built from the prompt itself.
 */
export const CHAT_CONTEXT_TEMPLATES = ['{}', 'Complete the sentence: {}', 'Tell me: {}'] as const;

/**
 * Contexts keys are averaged over and values searched under (compute.ts): the bare-text prefixes
 * (CONTEXT_TEMPLATES), the chat contexts (CHAT_CONTEXT_TEMPLATES, through the model's chat template), or both.
 */
export type EditContexts = 'plain' | 'chat' | 'plain+chat';

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
  /**
   * Anchor subjects (compute.ts): for an edit with a subject, the prompt with the subject replaced by each of
   * these adds one key (the prompt's last token) whose value is the layer's current output there, so the
   * least-squares update must leave "the same question about something else" as it is. Default (undefined):
   * the `anchor_subjects` recorded in the model's edit_stats.safetensors, else none. See `resolveDefaults`.
   */
  anchorSubjects?: readonly string[];
  /** Contexts of keys and values (above). */
  contexts: EditContexts;
  /** Edited layers (HF module paths); default: every layer the model's edit_stats.safetensors covers. */
  layers?: readonly string[];
  /** λ: pull toward W₀. */
  lambda: number;
  /**
   * μ: pull toward the anchor mapping on typical keys (K₀K₀ᵀ := E[kkᵀ]). Default (undefined): the `mu` recorded
   * in the model's edit_stats.safetensors (μ² scales those statistics, so the μ that suits them ships with
   * them; tiny-gpt2: 10), else 1. See `resolveMu`.
   */
  mu?: number;
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
  contexts: 'plain',
  lambda: 1,
  valueSearch: DEFAULT_VALUE_SEARCH,
  maxPromptChars: 1000,
  maxTargetChars: 200,
  maxTargetTokens: 16,
  snapshotEvery: 250,
  keepSnapshots: 4,
};

/** μ in effect: the explicit setting, else the statistics file's `mu` metadata, else 1. */
export function resolveMu(settings: Pick<EditSettings, 'mu'>, statsMetadata: Readonly<Record<string, string>>): number {
  if (settings.mu !== undefined) return settings.mu;
  const recorded = statsMetadata['mu'];
  if (recorded === undefined) return 1;
  const mu = Number(recorded);
  if (!Number.isFinite(mu) || mu < 0) throw new Error(`edit_stats.safetensors records mu = ${JSON.stringify(recorded)}, not a finite number ≥ 0`);
  return mu;
}

/** Anchor subjects in effect: the explicit setting, else the statistics file's `anchor_subjects` (JSON list), else none. */
export function resolveAnchors(settings: Pick<EditSettings, 'anchorSubjects'>, statsMetadata: Readonly<Record<string, string>>): readonly string[] {
  if (settings.anchorSubjects !== undefined) return settings.anchorSubjects;
  const recorded = statsMetadata['anchor_subjects'];
  if (recorded === undefined) return [];
  const list: unknown = JSON.parse(recorded);
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && s.trim() !== '')) {
    throw new Error(`edit_stats.safetensors records anchor_subjects = ${recorded}, not a list of non-empty strings`);
  }
  return list as string[];
}

/** The settings with the defaults the model's statistics record filled in (μ, anchor subjects). */
export function resolveDefaults(settings: EditSettings, statsMetadata: Readonly<Record<string, string>>): EditSettings & { mu: number; anchorSubjects: readonly string[] } {
  return { ...settings, mu: resolveMu(settings, statsMetadata), anchorSubjects: resolveAnchors(settings, statsMetadata) };
}
