import { Template } from '@huggingface/jinja';
import type { ChatMessage } from './types.ts';

/**
 * Used when `tokenizer_config.json` has no `chat_template`: one `role: content` line per message and an
 * open `assistant:` turn, which a base model trained on plain text can continue sensibly.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";

/**
 * The template itself refused the messages: `raise_exception(...)` (HF templates use it for, e.g., roles
 * that do not alternate) or a runtime error while rendering them. The message is the template's own; the
 * server answers it as a 400 on `messages`.
 */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    source: string | undefined,
    private readonly specialTokens: { bos_token?: string; eos_token?: string },
  ) {
    this.template = new Template(source ?? DEFAULT_CHAT_TEMPLATE);
  }

  /** Throws ChatTemplateError when the template raises for these messages. */
  render(messages: ChatMessage[]): string {
    try {
      return this.template.render({ messages, add_generation_prompt: true, ...this.specialTokens });
    } catch (cause) {
      throw new ChatTemplateError(cause instanceof Error ? cause.message : String(cause), { cause });
    }
  }
}
