/**
 * Server-Sent Events in OpenAI's streaming format: `data: {chunk}\n\n` per chunk, then `data: [DONE]\n\n`.
 * The route supplies the chunk shapes (`text_completion` vs `chat.completion.chunk`); this module owns the
 * order (opening chunks, text deltas, the finish chunk, the optional usage chunk, [DONE]) and what happens
 * when the client leaves (the sequence is aborted and nothing more is written).
 */
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { GenerationResult, StreamEvent } from '../runtime/types.ts';
import type { AppEnv } from './env.ts';
import { editSeqOf, openAIFinishReason, type ChoiceEvent, type Generation } from './generation.ts';

export interface ChunkFormat {
  /** Chunks sent before the first token, e.g. chat's `{delta: {role: 'assistant'}}` per choice. */
  opening(): object[];
  /** The chunk for one event of choice `index`, or undefined when it carries nothing to send. */
  event(index: number, event: StreamEvent): object | undefined;
  finish(index: number, reason: ReturnType<typeof openAIFinishReason>): object;
  /** The extra chunk of `stream_options.include_usage`, with `choices: []`. */
  usage(usage: Usage): object;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** OpenAI's usage: each prompt counted once (however many choices it has), every choice's completion. */
export function usageOf(gen: Generation, results: readonly GenerationResult[]): Usage {
  const completion = results.reduce((n, r) => n + r.completionTokens, 0);
  return { prompt_tokens: gen.promptTokens, completion_tokens: completion, total_tokens: gen.promptTokens + completion };
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
  let first: IteratorResult<ChoiceEvent>;
  try {
    first = await events.next();
  } catch (err) {
    await gen.finish().catch(() => undefined);
    throw err;
  }
  const baseVersion = gen.baseVersion;
  if (baseVersion !== undefined) c.header('x-patchbay-base-version', String(baseVersion));
  c.header('x-patchbay-edit-seq', String(editSeqOf(gen.baseLabels)));

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
        const chunk = gen.aborted ? undefined : format.event(next.value.index, next.value.event);
        if (chunk) await send(chunk);
      }
      const results = await gen.finish();
      if (gen.aborted) return;
      for (const [i, result] of results.entries()) await send(format.finish(gen.choices[i]!.index, openAIFinishReason(result.finishReason)));
      if (includeUsage) await stream.writeSSE({ data: JSON.stringify(format.usage(usageOf(gen, results))) });
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
