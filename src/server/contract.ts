/**
 * The part of the runtime the HTTP layer uses. The real `Runtime` from `src/runtime/index.ts` satisfies it
 * structurally; keeping the server on this narrow shape lets route tests and future embedders see exactly
 * what the server depends on.
 */
import type { PromptBound } from '../runtime/prompt-bound.ts';
import type { ChatMessage, GenerationHandle, GenerationRequest } from '../runtime/types.ts';
import type { BaseVersions } from '../runtime/versions/base-versions.ts';

export interface ServedModelInfo {
  readonly id: string;
  readonly contextLength: number;
  readonly vocabSize: number;
}

export interface ServedTokenizer {
  encode(text: string): number[];
  /** A completion prompt with the model's BOS when it asks for one (add_bos_token). */
  encodePrompt(text: string): number[];
  decode(ids: number[]): string;
  applyChatTemplate(messages: ChatMessage[]): string;
  /** Raw bytes of one vocabulary entry, for logprobs. */
  tokenBytes(id: number): Uint8Array;
  /** Checked before rendering or encoding: a prompt whose length alone cannot fit the context is refused. */
  readonly promptBound: PromptBound;
}

export interface ServedScheduler {
  /** Throws PatchbayError: 429 queue full, 400 prompt + max_tokens over context, 503 draining. */
  submit(req: GenerationRequest): GenerationHandle;
  /** n completions of one prompt, prefilled once; 400 (param `n`) above the batch size. */
  submitMany(req: GenerationRequest, n: number): GenerationHandle[];
  drain(): Promise<void>;
  readonly activeCount: number;
  readonly queuedCount: number;
}

export interface ServingRuntime {
  readonly model: ServedModelInfo;
  readonly tokenizer: ServedTokenizer;
  readonly scheduler: ServedScheduler;
  /** Global weight changes (robustness patches); absent in runtimes that cannot change their weights. */
  readonly versions?: BaseVersions;
  /** Builds the reduced-branch session for adapter layers known ahead (Runtime.prepareBranches); optional. */
  prepareBranches?(layers: ReadonlySet<string>): Promise<boolean>;
}
