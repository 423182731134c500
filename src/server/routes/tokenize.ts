/**
 * vLLM's `POST /tokenize` and `POST /detokenize`. Tokenization is exactly what the generation routes do:
 * a `prompt` is encoded as /v1/completions encodes it, `messages` are rendered with the chat template and
 * encoded as /v1/chat/completions does, so `count` is the prompt_tokens those routes will bill.
 * `model`, when given, must name a served model or adapter (they all share the base's tokenizer).
 */
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { badRequest } from '../../errors.ts';
import { parseJsonBody } from '../body.ts';
import type { AppEnv } from '../env.ts';
import { modelNotFound } from '../resolver.ts';
import { ChatMessages } from '../schemas.ts';
import type { ServingState } from '../state.ts';
import { visibleResolver } from '../tenants/tenancy.ts';
import { toChatMessages } from './chat.ts';

const model = z.string().min(1).nullish();

const TokenizeBody = z.union(
  [
    z.looseObject({ model, prompt: z.string({ error: 'prompt must be a string' }) }),
    z.looseObject({ model, messages: ChatMessages }),
  ],
  { error: 'the body needs a prompt (string) or messages (chat)' },
);

const DetokenizeBody = z.looseObject({
  model,
  tokens: z.array(z.number().int().min(0), { error: 'tokens must be an array of token ids' }),
});

export function tokenizeRoutes(app: Hono<AppEnv>, state: ServingState): void {
  const served = (c: Context<AppEnv>, id: string | null | undefined) => {
    const serving = state.loaded();
    const { runtime } = serving;
    if (id != null && !visibleResolver(c, serving).get(id)) throw modelNotFound(id);
    return runtime;
  };

  app.post('/tokenize', async function tokenize(c) {
    const body = await parseJsonBody(c, TokenizeBody);
    const runtime = served(c, body.model);
    const { tokenizer } = runtime;
    const text = typeof body.prompt === 'string' ? body.prompt : tokenizer.applyChatTemplate(toChatMessages(body.messages as z.infer<typeof ChatMessages>));
    const tokens = tokenizer.encode(text);
    return c.json({ count: tokens.length, max_model_len: runtime.model.contextLength, tokens });
  });

  app.post('/detokenize', async function detokenize(c) {
    const body = await parseJsonBody(c, DetokenizeBody);
    const runtime = served(c, body.model);
    const vocab = runtime.model.vocabSize;
    const outside = body.tokens.find((t) => t >= vocab);
    if (outside !== undefined) throw badRequest(`'tokens' has id ${outside}, outside the vocabulary (size ${vocab}).`, 'tokens');
    return c.json({ prompt: runtime.tokenizer.decode(body.tokens) });
  });
}
