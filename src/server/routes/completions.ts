/** `POST /v1/completions`: OpenAI's legacy text completion, streaming or not, with echo, logprobs and n. */
import type { Hono } from 'hono';
import type { GenerationResult, StreamEvent } from '../../runtime/types.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { editSeqOf, Generation, openAIFinishReason, type GenerationDeps } from '../generation.ts';
import { CompletionLogprobsWriter, type CompletionLogprobs } from '../logprobs-format.ts';
import { CompletionBody } from '../schemas.ts';
import { streamGeneration, usageOf, type ChunkFormat } from '../sse.ts';
import { responseId, samplingFrom, unixSeconds } from './sampling.ts';

const ROUTE = '/v1/completions';
/** OpenAI's default for this endpoint. */
const DEFAULT_MAX_TOKENS = 16;

const isTokenIds = (p: readonly unknown[]): p is number[] => p.every((x) => typeof x === 'number');

/** The prompts in any of the accepted shapes: a string, token ids, or a list of either. */
function promptsOf(prompt: CompletionBody['prompt']): (string | number[])[] {
  if (typeof prompt === 'string') return [prompt];
  if (isTokenIds(prompt)) return [prompt];
  return prompt as (string | number[])[];
}

export function completionsRoute(app: Hono<AppEnv>, deps: GenerationDeps): void {
  app.post(ROUTE, async function completions(c) {
    const body = await parseJsonBody(c, CompletionBody);
    const prompts = promptsOf(body.prompt);
    const stream = body.stream === true;
    const echo = body.echo === true;
    const logprobs = body.logprobs ?? undefined;
    const n = body.n ?? 1;
    const gen = await Generation.start(c, deps, {
      route: ROUTE,
      operation: 'text_completion',
      stream,
      attach: body,
      // Token ids are counted exactly (no encoding needed); text is bounded from its length first. Each
      // prompt is its own generation, so the longest one decides.
      promptChars: Math.max(0, ...prompts.map((p) => (typeof p === 'string' ? p.length : 0))),
      prompts: (tokenizer) => prompts.map((p) => (typeof p === 'string' ? tokenizer.encodePrompt(p) : p)),
      promptParam: 'prompt',
      maxTokens: body.max_tokens ?? undefined,
      maxTokensParam: 'max_tokens',
      defaultMaxTokens: () => DEFAULT_MAX_TOKENS,
      sampling: samplingFrom(body),
      n,
      ...(logprobs !== undefined ? { logprobs } : {}),
      // Prompt logprobs cost a full-width lm_head in the prefill: only echo + logprobs asks for them.
      ...(echo && logprobs !== undefined ? { promptLogprobs: logprobs } : {}),
    });
    const tokenizer = deps.state.loaded().runtime.tokenizer;
    // OpenAI echoes the prompt as sent; token-id prompts are decoded.
    const echoed = prompts.map((p, i) => (!echo ? '' : typeof p === 'string' ? p : tokenizer.decode(gen.prompts[i]!)));
    const promptOf = (index: number) => gen.choices.find((ch) => ch.index === index)!.promptIndex;
    const id = responseId('cmpl');
    const created = unixSeconds();
    const model = gen.resolution.modelId;
    const chunk = (index: number, text: string, lp: CompletionLogprobs | null, finish_reason: string | null) => ({
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index, text, logprobs: lp, finish_reason }],
    });

    if (stream) {
      const writers = new Map<number, CompletionLogprobsWriter>();
      const writer = (index: number) => {
        let w = writers.get(index);
        if (!w) writers.set(index, (w = new CompletionLogprobsWriter(tokenizer)));
        return w;
      };
      const format: ChunkFormat = {
        // Echo without logprobs is known up front; with logprobs it waits for the prefill's prompt event.
        opening: () => (echo && logprobs === undefined ? gen.choices.map((ch) => chunk(ch.index, echoed[ch.promptIndex]!, null, null)) : []),
        event(index: number, event: StreamEvent) {
          if (event.promptLogprobs) {
            const p = promptOf(index);
            return chunk(index, echoed[p]!, writer(index).write(gen.prompts[p]!, event.promptLogprobs), null);
          }
          const entries = [...(event.logprobs ?? []), ...(event.endLogprob ? [event.endLogprob] : [])];
          const lp = logprobs !== undefined && entries.length > 0 ? writer(index).write(entries.map((e) => e.token), entries) : null;
          return event.text !== '' || lp ? chunk(index, event.text, lp, null) : undefined;
        },
        finish: (index, reason) => chunk(index, '', null, reason),
        usage: (usage) => ({ id, object: 'text_completion', created, model, choices: [], usage }),
      };
      return streamGeneration(c, gen, format, body.stream_options?.include_usage === true);
    }

    // Draining the events (not just awaiting the result) times the first token for the TTFT histogram.
    for await (const event of gen.events()) void event;
    const results = await gen.finish();
    c.header('x-patchbay-base-version', String(results[0]!.baseVersion));
    c.header('x-patchbay-edit-seq', String(editSeqOf(results[0]!.baseLabels)));
    const choice = (result: GenerationResult, i: number) => {
      const { index, promptIndex } = gen.choices[i]!;
      const prefix = echoed[promptIndex]!;
      const text = prefix + result.text;
      let lp: CompletionLogprobs | null = null;
      if (logprobs !== undefined) {
        const promptIds = echo ? gen.prompts[promptIndex]! : [];
        const generated = result.logprobs ?? [];
        const entries = [...(echo ? (result.promptLogprobs ?? []) : []), ...generated];
        const tokens = [...promptIds, ...generated.map((e) => e.token)];
        // Tokens cut away with a stop string are not returned (those starting past the text's end).
        lp = new CompletionLogprobsWriter(tokenizer).write(tokens, entries, result.stoppedByString ? text.length : Infinity);
      }
      return { index, text, logprobs: lp, finish_reason: openAIFinishReason(result.finishReason) };
    };
    return c.json({ id, object: 'text_completion', created, model, choices: results.map(choice), usage: usageOf(gen, results) });
  });
}
