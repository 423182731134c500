import { Template } from '@huggingface/jinja';
import type { ChatMessage } from './types.ts';

/**
 * Used when `tokenizer_config.json` has no `chat_template`: one `role: content` line per message and an
 * open `assistant:` turn, which a base model trained on plain text can continue sensibly.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    source: string | undefined,
    private readonly specialTokens: { bos_token?: string; eos_token?: string },
  ) {
    this.template = new Template(source ?? DEFAULT_CHAT_TEMPLATE);
  }

  render(messages: ChatMessage[]): string {
    return this.template.render({ messages, add_generation_prompt: true, ...this.specialTokens });
  }
}
