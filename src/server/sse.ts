/**
 * Server-Sent Events in OpenAI's streaming format: `data: {chunk}\n\n` per chunk, then `data: [DONE]\n\n`.
 * The route supplies the chunk shapes (`text_completion` vs `chat.completion.chunk`); this module owns the
 * order (opening chunks, text deltas, the finish chunk, the optional usage chunk, [DONE]) and what happens
 * when the client leaves (the sequence is aborted and nothing more is written).
 */
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { GenerationResult } from '../runtime/types.ts';
import type { AppEnv } from './env.ts';
import { openAIFinishReason, type Generation } from './generation.ts';

export interface ChunkFormat {
  /** Chunks sent before the first token, e.g. chat's `{delta: {role: 'assistant'}}`. */
  opening(): object[];
  text(delta: string): object;
  finish(reason: ReturnType<typeof openAIFinishReason>): object;
  /** The extra chunk of `stream_options.include_usage`, with `choices: []`. */
  usage(result: GenerationResult): object;
}

export function usageOf(result: GenerationResult) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.completionTokens,
    total_tokens: result.promptTokens + result.completionTokens,
  };
}

/**
 * Headers go out with the first token, not before: errors while queued or in prefill still get a real
 * status code, and the base version that serves the sequence is known by then for its header.
 */
export async function streamGeneration(
  c: Context<AppEnv>,
  gen: Generation,
  format: ChunkFormat,
  includeUsage: boolean,
): Promise<Response> {
  const events = gen.events();
  let first: IteratorResult<{ text: string }>;
  try {
    first = await events.next();
  } catch (err) {
    await gen.finish().catch(() => undefined);
    throw err;
  }
  const baseVersion = gen.baseVersion;
  if (baseVersion !== undefined) c.header('x-patchbay-base-version', String(baseVersion));

  let streamEnded!: () => void;
  c.set('streamDone', new Promise<void>((resolve) => (streamEnded = resolve)));
  const log = c.get('logger');

  return streamSSE(c, async function writeGeneration(stream) {
    // hono aborts the stream when node-server cancels the response body (the socket closed).
    stream.onAbort(() => gen.abort());
    // With include_usage, OpenAI sends `usage: null` on every chunk but the last.
    const send = (chunk: object) =>
      stream.writeSSE({ data: JSON.stringify(includeUsage ? { ...chunk, usage: null } : chunk) });
    try {
      for (const chunk of format.opening()) await send(chunk);
      // Keep consuming after an abort: the runtime ends the iteration once the sequence left the batch.
      for (let next = first; !next.done; next = await events.next()) {
        if (next.value.text !== '' && !gen.aborted) await send(format.text(next.value.text));
      }
      const result = await gen.finish();
      if (gen.aborted) return;
      await send(format.finish(openAIFinishReason(result.finishReason)));
      if (includeUsage) await stream.writeSSE({ data: JSON.stringify(format.usage(result)) });
      await stream.writeSSE({ data: '[DONE]' });
    } catch (err) {
      // Headers are gone, so the status cannot change: report in-band like vLLM, then end the stream.
      log.error({ err, requestId: c.get('requestId') }, 'generation failed mid-stream');
      if (!gen.aborted) {
        const error = {
          message: `The server had an error while generating (request id ${c.get('requestId')}).`,
          type: 'server_error',
          param: null,
          code: 'internal_error',
        };
        await stream.writeSSE({ data: JSON.stringify({ error }) });
        await stream.writeSSE({ data: '[DONE]' });
      }
    } finally {
      await gen.finish().catch(() => undefined);
      streamEnded();
    }
  });
}
