/**
 * The part of the runtime the HTTP layer uses. The real `Runtime` from `src/runtime/index.ts` satisfies it
 * structurally; keeping the server on this narrow shape lets route tests and future embedders see exactly
 * what the server depends on.
 */
import type { ChatMessage, GenerationHandle, GenerationRequest } from '../runtime/types.ts';

export interface ServedModelInfo {
  readonly id: string;
  readonly contextLength: number;
  readonly vocabSize: number;
}

export interface ServedTokenizer {
  encode(text: string): number[];
  applyChatTemplate(messages: ChatMessage[]): string;
}

export interface ServedScheduler {
  /** Throws PatchbayError: 429 queue full, 400 prompt + max_tokens over context, 503 draining. */
  submit(req: GenerationRequest): GenerationHandle;
  drain(): Promise<void>;
  readonly activeCount: number;
  readonly queuedCount: number;
}

export interface ServingRuntime {
  readonly model: ServedModelInfo;
  readonly tokenizer: ServedTokenizer;
  readonly scheduler: ServedScheduler;
}
