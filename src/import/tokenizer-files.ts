/**
 * Hugging Face `tokenizer.json` + `tokenizer_config.json` from GGUF tokenizer metadata (`tokenizer.ggml.*`).
 *
 * Supported: `tokenizer.ggml.model = gpt2` (byte-level BPE: tokens + merges) with the pre-tokenizers
 * llama.cpp names `gpt-2`/`default` (GPT-2 regex), `smollm` (single digits, then GPT-2 regex) and
 * `llama-bpe` (Llama 3 regex), `qwen2` (the same with single digits); and `llama`, SentencePiece vocabularies (tokens + scores: TinyLlama, Llama 2),
 * converted by sentencepiece-tokenizer.ts. Other models and pre-tokenizers are refused by name. Token type 3
 * (control) — and for SentencePiece 2 (unknown) — becomes a special added token, 4 (user-defined) a
 * non-special added token, so chat markers like `<|im_start|>` are matched whole.
 */
import { unsupportedGguf, type GgufFile } from '../runtime/gguf/index.ts';
import { sentencePieceModel } from './sentencepiece-tokenizer.ts';

const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** llama.cpp's `qwen2` pre-tokenizer: Llama 3's, with single digits. */
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });

function preTokenizer(pre: string, source: string): object {
  switch (pre) {
    case 'default':
    case 'gpt-2':
    case 'gpt2':
      return byteLevel(true);
    case 'smollm':
      return { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] };
    case 'qwen2':
      return {
        type: 'Sequence',
        pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_REGEX }, behavior: 'Isolated', invert: false }, byteLevel(false)],
      };
    case 'llama-bpe':
    case 'llama3':
      return {
        type: 'Sequence',
        pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false }, byteLevel(false)],
      };
    default:
      throw unsupportedGguf(source, `tokenizer pre-tokenizer "${pre}" is not supported (known: gpt-2, smollm, llama-bpe, qwen2)`);
  }
}

export interface TokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
  bosTokenId: number | undefined;
  eosTokenId: number | undefined;
  padTokenId: number | undefined;
  /** The chat template, also written as chat_template.jinja. */
  chatTemplate: string | undefined;
}

export function buildTokenizerFiles(file: GgufFile, contextLength: number): TokenizerFiles {
  const m = file.metadata;
  const model = m.string('tokenizer.ggml.model');
  if (model !== 'gpt2' && model !== 'llama') {
    throw unsupportedGguf(file.source, `tokenizer model "${model}" is not supported (byte-level BPE "gpt2" and SentencePiece "llama" are)`);
  }
  const spm = model === 'llama';
  const tokens = m.stringArray('tokenizer.ggml.tokens');
  const merges = spm ? [] : m.stringArray('tokenizer.ggml.merges');
  if (!tokens || !merges) throw unsupportedGguf(file.source, 'tokenizer.ggml.tokens and tokenizer.ggml.merges are required for a gpt2 tokenizer');
  const types = m.numberArray('tokenizer.ggml.token_type') ?? [];
  if (types.length && types.length !== tokens.length) throw unsupportedGguf(file.source, `${types.length} token types for ${tokens.length} tokens`);
  const pre = spm ? 'default' : m.string('tokenizer.ggml.pre', 'default');

  const vocab: Record<string, number> = {};
  const added: object[] = [];
  tokens.forEach((t, id) => {
    if (Object.hasOwn(vocab, t)) throw unsupportedGguf(file.source, `token ${JSON.stringify(t)} appears twice in the vocabulary`);
    vocab[t] = id;
    const type = types[id] ?? 1;
    const special = type === 3 || (spm && type === 2);
    if (special || type === 4) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: !special, special });
    }
  });
  const id = (key: string) => {
    const v = m.number(`tokenizer.ggml.${key}`, undefined);
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v >= tokens.length)) {
      throw unsupportedGguf(file.source, `tokenizer.ggml.${key} = ${v} is not a token id`);
    }
    return v;
  };
  const bos = id('bos_token_id');
  const eos = id('eos_token_id');
  const pad = id('padding_token_id');
  const unk = id('unknown_token_id');
  const chatTemplate = m.string('tokenizer.chat_template', undefined);

  const text = (i: number | undefined) => (i === undefined ? undefined : tokens[i]);
  const sp = spm ? sentencePieceModel(file, tokens, vocab, text(unk)) : undefined;
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: sp ? sp.normalizer : null,
    pre_tokenizer: sp ? sp.preTokenizer : preTokenizer(pre, file.source),
    post_processor: null,
    decoder: sp ? sp.decoder : { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: sp
      ? sp.model
      : {
          type: 'BPE',
          dropout: null,
          unk_token: null,
          continuing_subword_prefix: null,
          end_of_word_suffix: null,
          fuse_unk: false,
          byte_fallback: false,
          ignore_merges: pre === 'llama-bpe' || pre === 'llama3',
          vocab,
          merges,
        },
  };
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: text(bos) ?? null,
    eos_token: text(eos) ?? null,
    pad_token: text(pad) ?? null,
    unk_token: text(unk) ?? null,
    // llama.cpp's default when the file does not say: a BOS for SentencePiece vocabularies, none for byte-level BPE.
    add_bos_token: m.bool('tokenizer.ggml.add_bos_token', spm),
    add_eos_token: m.bool('tokenizer.ggml.add_eos_token', false),
    clean_up_tokenization_spaces: false,
    model_max_length: contextLength,
    ...(chatTemplate !== undefined ? { chat_template: chatTemplate } : {}),
  };
  return { tokenizerJson, tokenizerConfig, bosTokenId: bos, eosTokenId: eos, padTokenId: pad, chatTemplate };
}
