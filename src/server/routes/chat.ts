/** `POST /v1/chat/completions`: the model's chat template renders the messages; streaming or not. */
import type { Hono } from 'hono';
import type { ChatMessage, StreamEvent } from '../../runtime/types.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { editSeqOf, Generation, openAIFinishReason, type GenerationDeps } from '../generation.ts';
import { chatLogprobs } from '../logprobs-format.ts';
import { ChatBody } from '../schemas.ts';
import { streamGeneration, usageOf, type ChunkFormat } from '../sse.ts';
import { responseId, samplingFrom, unixSeconds } from './sampling.ts';

const ROUTE = '/v1/chat/completions';
/** Without max_tokens a chat reply may use this much, or what is left of the context if less. */
const DEFAULT_MAX_TOKENS = 256;

/** Text parts are joined; `developer` is OpenAI's newer name for `system`, which templates know. */
export function toChatMessages(messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
  }));
}

export function chatRoute(app: Hono<AppEnv>, deps: GenerationDeps): void {
  app.post(ROUTE, async function chatCompletions(c) {
    const body = await parseJsonBody(c, ChatBody);
    const messages = toChatMessages(body.messages);
    const stream = body.stream === true;
    // OpenAI: `top_logprobs` needs `logprobs: true` (the schema enforces it); logprobs alone = the token only.
    const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
    const gen = await Generation.start(c, deps, {
      route: ROUTE,
      operation: 'chat',
      stream,
      attach: body,
      // The template renders every message's content, so the rendered prompt is at least this long.
      promptChars: messages.reduce((n, m) => n + m.content.length, 0),
      prompts: (tokenizer) => [tokenizer.encode(tokenizer.applyChatTemplate(messages))],
      promptParam: 'messages',
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      maxTokensParam: body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens',
      defaultMaxTokens: (room) => Math.min(DEFAULT_MAX_TOKENS, room),
      sampling: samplingFrom(body),
      n: body.n ?? 1,
      ...(logprobs !== undefined ? { logprobs } : {}),
    });
    const tokenizer = deps.state.loaded().runtime.tokenizer;
    const id = responseId('chatcmpl');
    const created = unixSeconds();
    const model = gen.resolution.modelId;

    if (stream) {
      const chunk = (index: number, delta: object, lp: object | null, finish_reason: string | null) => ({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index, delta, logprobs: lp, finish_reason }],
      });
      const format: ChunkFormat = {
        opening: () => gen.choices.map((ch) => chunk(ch.index, { role: 'assistant', content: '' }, null, null)),
        event(index: number, event: StreamEvent) {
          // The EOS that ended a reply is not part of its content, so chat leaves its logprob out.
          const lp = logprobs !== undefined && event.logprobs ? chatLogprobs(tokenizer, event.logprobs) : null;
          return event.text !== '' || lp ? chunk(index, { content: event.text }, lp, null) : undefined;
        },
        finish: (index, reason) => chunk(index, {}, null, reason),
        usage: (usage) => ({ id, object: 'chat.completion.chunk', created, model, choices: [], usage }),
      };
      return streamGeneration(c, gen, format, body.stream_options?.include_usage === true);
    }

    // Draining the events (not just awaiting the result) times the first token for the TTFT histogram.
    for await (const event of gen.events()) void event;
    const results = await gen.finish();
    c.header('x-patchbay-base-version', String(results[0]!.baseVersion));
    c.header('x-patchbay-edit-seq', String(editSeqOf(results[0]!.baseLabels)));
    return c.json({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: results.map((result, i) => ({
        index: gen.choices[i]!.index,
        message: { role: 'assistant', content: result.text },
        logprobs: logprobs !== undefined ? chatLogprobs(tokenizer, (result.logprobs ?? []).slice(0, result.tokenIds.length)) : null,
        finish_reason: openAIFinishReason(result.finishReason),
      })),
      usage: usageOf(gen, results),
    });
  });
}
