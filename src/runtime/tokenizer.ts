import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { PatchbayError } from '../errors.ts';
import { ChatTemplate } from './chat-template.ts';
import { TokenBytes } from './token-bytes.ts';
import { promptBound, type PromptBound } from './prompt-bound.ts';
import type { ChatMessage } from './types.ts';

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  applyChatTemplate(messages: ChatMessage[]): string;
  /** The raw bytes of one vocabulary entry (token-bytes.ts), for logprobs. */
  tokenBytes(id: number): Uint8Array;
  /** Most characters one token can cover (prompt-bound.ts): lets a too-long prompt be refused untokenized. */
  readonly promptBound: PromptBound;
}

interface TokenizerConfig {
  chat_template?: string | Array<{ name: string; template: string }>;
  bos_token?: string | { content: string };
  eos_token?: string | { content: string };
}

const tokenText = (t: TokenizerConfig['bos_token']) => (typeof t === 'object' ? t.content : t);

/** Hugging Face `tokenizer.json` + `tokenizer_config.json`, through the pure-JS @huggingface/tokenizers. */
export class HfTokenizer implements TextTokenizer {
  private readonly bytes: TokenBytes;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly chat: ChatTemplate,
    readonly promptBound: PromptBound,
    json: { decoder?: object | null; added_tokens?: Array<{ id: number; special?: boolean }> },
  ) {
    const special = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    this.bytes = new TokenBytes((id) => tokenizer.id_to_token(id), json.decoder, special);
  }

  static async load(modelDir: string): Promise<HfTokenizer> {
    let json: object;
    let config: TokenizerConfig = {};
    try {
      json = JSON.parse(await readFile(join(modelDir, 'tokenizer.json'), 'utf8')) as object;
    } catch (cause) {
      throw new PatchbayError({ status: 400, code: 'invalid_model', message: `cannot read ${modelDir}/tokenizer.json`, cause });
    }
    try {
      config = JSON.parse(await readFile(join(modelDir, 'tokenizer_config.json'), 'utf8')) as TokenizerConfig;
    } catch {
      // tokenizer_config.json is optional: defaults apply (no special tokens, default chat template).
    }
    const template = Array.isArray(config.chat_template)
      ? config.chat_template.find((t) => t.name === 'default')?.template
      : config.chat_template;
    const chat = new ChatTemplate(template, { bos_token: tokenText(config.bos_token), eos_token: tokenText(config.eos_token) });
    return new HfTokenizer(new Tokenizer(json, config), chat, promptBound(json), json);
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: number[]): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids, { skip_special_tokens: true });
  }

  applyChatTemplate(messages: ChatMessage[]): string {
    return this.chat.render(messages);
  }

  tokenBytes(id: number): Uint8Array {
    return this.bytes.bytes(id);
  }
}

/**
 * Turns a growing list of token ids into text deltas. Byte-level BPE can split one character over several
 * tokens, so text is released only once it no longer ends in U+FFFD (the same prefix/read offsets that
 * Hugging Face's TextStreamer and vLLM's detokenizer use).
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly tokenizer: TextTokenizer) {}

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return full.slice(prefix.length);
    }
    return '';
  }
}
