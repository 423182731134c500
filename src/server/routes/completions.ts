/** `POST /v1/completions`: OpenAI's legacy text completion, streaming or not. */
import type { Hono } from 'hono';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { Generation, openAIFinishReason, type GenerationDeps } from '../generation.ts';
import { CompletionBody } from '../schemas.ts';
import { streamGeneration, usageOf, type ChunkFormat } from '../sse.ts';
import { responseId, samplingFrom, unixSeconds } from './sampling.ts';

const ROUTE = '/v1/completions';
/** OpenAI's default for this endpoint. */
const DEFAULT_MAX_TOKENS = 16;

const isTokenIds = (p: readonly unknown[]): p is number[] => p.every((x) => typeof x === 'number');

/** A single prompt in any of the accepted shapes; the schema already rejected more than one. */
function promptOf(prompt: CompletionBody['prompt']): string | number[] {
  if (typeof prompt === 'string' || isTokenIds(prompt)) return prompt;
  const first = prompt[0];
  return first === undefined ? [] : first;
}

export function completionsRoute(app: Hono<AppEnv>, deps: GenerationDeps): void {
  app.post(ROUTE, async function completions(c) {
    const body = await parseJsonBody(c, CompletionBody);
    const prompt = promptOf(body.prompt);
    const stream = body.stream === true;
    const gen = await Generation.start(c, deps, {
      route: ROUTE,
      operation: 'text_completion',
      stream,
      attach: body,
      promptIds: (tokenizer) => (typeof prompt === 'string' ? tokenizer.encode(prompt) : prompt),
      promptParam: 'prompt',
      maxTokens: body.max_tokens ?? undefined,
      maxTokensParam: 'max_tokens',
      defaultMaxTokens: () => DEFAULT_MAX_TOKENS,
      sampling: samplingFrom(body),
    });
    const id = responseId('cmpl');
    const created = unixSeconds();
    const model = gen.resolution.modelId;
    c.header('x-patchbay-edit-seq', String(gen.resolution.editSeq));
    const chunk = (text: string, finish_reason: string | null) => ({
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index: 0, text, logprobs: null, finish_reason }],
    });

    if (stream) {
      const format: ChunkFormat = {
        opening: () => [],
        text: (delta) => chunk(delta, null),
        finish: (reason) => chunk('', reason),
        usage: (result) => ({ id, object: 'text_completion', created, model, choices: [], usage: usageOf(result) }),
      };
      return streamGeneration(c, gen, format, body.stream_options?.include_usage === true);
    }

    // Draining the events (not just awaiting the result) times the first token for the TTFT histogram.
    for await (const event of gen.events()) void event;
    const result = await gen.finish();
    c.header('x-patchbay-base-version', String(result.baseVersion));
    return c.json({ ...chunk(result.text, openAIFinishReason(result.finishReason)), usage: usageOf(result) });
  });
}
