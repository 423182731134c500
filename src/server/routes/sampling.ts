/** Maps the OpenAI sampling fields both generation routes share onto the runtime's SamplingParams. */
import type { SamplingParams } from '../../runtime/types.ts';
import type { CompletionBody } from '../schemas.ts';

type SamplingFields = Pick<
  CompletionBody,
  | 'temperature'
  | 'top_p'
  | 'top_k'
  | 'seed'
  | 'stop'
  | 'ignore_eos'
  | 'presence_penalty'
  | 'frequency_penalty'
  | 'repetition_penalty'
  | 'logit_bias'
  | 'min_tokens'
  | 'stop_token_ids'
>;

/** OpenAI's defaults: temperature 1, top_p 1; top_k 0 (off) as in vLLM. */
export function samplingFrom(body: SamplingFields): Omit<SamplingParams, 'maxTokens'> {
  return {
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    stop: body.stop ?? [],
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...(body.ignore_eos ? { ignoreEos: true } : {}),
    ...(body.presence_penalty ? { presencePenalty: body.presence_penalty } : {}),
    ...(body.frequency_penalty ? { frequencyPenalty: body.frequency_penalty } : {}),
    ...(body.repetition_penalty != null && body.repetition_penalty !== 1 ? { repetitionPenalty: body.repetition_penalty } : {}),
    ...(body.logit_bias && Object.keys(body.logit_bias).length > 0
      ? { logitBias: new Map(Object.entries(body.logit_bias).map(([id, bias]) => [Number(id), bias])) }
      : {}),
    ...(body.min_tokens ? { minTokens: body.min_tokens } : {}),
    ...(body.stop_token_ids?.length ? { stopTokenIds: body.stop_token_ids } : {}),
  };
}

/** `cmpl-…` / `chatcmpl-…`: OpenAI's prefixes, with the random part of a UUID. */
export function responseId(prefix: 'cmpl' | 'chatcmpl'): string {
  return `${prefix}-${crypto.randomUUID().replaceAll('-', '')}`;
}

export const unixSeconds = () => Math.floor(Date.now() / 1000);
