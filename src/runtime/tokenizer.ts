import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { PatchbayError } from '../errors.ts';
import { ChatTemplate } from './chat-template.ts';
import { TokenBytes } from './token-bytes.ts';
import { promptBound, type PromptBound } from './prompt-bound.ts';
import type { ChatMessage } from './types.ts';

export interface TextTokenizer {
  /** Text → ids, no special tokens added (what a chat template's rendering is encoded with, as in HF). */
  encode(text: string): number[];
  /**
   * A completion prompt → ids as HF's `tokenizer(text)` gives them: the BOS token first when
   * tokenizer_config.json says `add_bos_token` (Llama-family models), unless the text already starts with it.
   */
  encodePrompt(text: string): number[];
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
  add_bos_token?: boolean;
}

const tokenText = (t: TokenizerConfig['bos_token']) => (typeof t === 'object' && t !== null ? t.content : (t ?? undefined));

/**
 * transformers 5 saves the chat template as `chat_template.jinja` beside the tokenizer files; when present it
 * wins over tokenizer_config.json's `chat_template`, as in transformers' loader.
 */
async function readChatTemplateFile(modelDir: string): Promise<string | undefined> {
  try {
    return await readFile(join(modelDir, 'chat_template.jinja'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PatchbayError({ status: 400, code: 'invalid_model', message: `cannot read ${modelDir}/chat_template.jinja`, cause: e });
  }
}

/** Hugging Face `tokenizer.json` + `tokenizer_config.json`, through the pure-JS @huggingface/tokenizers. */
export class HfTokenizer implements TextTokenizer {
  private readonly bytes: TokenBytes;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly chat: ChatTemplate,
    readonly promptBound: PromptBound,
    /** Prepended by encodePrompt (add_bos_token); undefined when the model does not want one. */
    private readonly bosId: number | undefined,
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
    const template = (await readChatTemplateFile(modelDir)) ?? (Array.isArray(config.chat_template)
      ? config.chat_template.find((t) => t.name === 'default')?.template
      : config.chat_template);
    const bosText = tokenText(config.bos_token);
    const chat = new ChatTemplate(template, { bos_token: bosText, eos_token: tokenText(config.eos_token) });
    const tokenizer = new Tokenizer(json, config);
    let bosId: number | undefined;
    if (config.add_bos_token === true) {
      bosId = bosText === undefined ? undefined : tokenizer.token_to_id(bosText);
      if (bosId === undefined) {
        throw new PatchbayError({ status: 400, code: 'invalid_model', message: `${modelDir}/tokenizer_config.json sets add_bos_token but its bos_token is not in the vocabulary` });
      }
    }
    return new HfTokenizer(tokenizer, chat, promptBound(json), bosId, json);
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  encodePrompt(text: string): number[] {
    const ids = this.encode(text);
    return this.bosId === undefined || ids[0] === this.bosId ? ids : [this.bosId, ...ids];
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
