/**
 * How many characters one token can cover at most, read from `tokenizer.json`, so that a prompt too long
 * for the context can be refused from its length alone — before chat-template rendering and tokenization,
 * which are synchronous and would block the event loop (and every stream) on a huge prompt.
 *
 * The bound: with a byte-level vocabulary and no normalizer, the tokens of a text spell its UTF-8 bytes
 * exactly, so tokens ≥ utf8Bytes(text) / B where B = the longest token in bytes; and utf8Bytes ≥ the
 * string's UTF-16 length (1–3 bytes per BMP unit, 4 bytes per surrogate pair). Hence
 *     tokens(text) ≥ ⌈text.length / B⌉,
 * and a prompt with ⌈length / B⌉ ≥ context cannot fit. Normalizers that only map or compose characters
 * (NFC/NFKC/…, lowercase, Replace with non-empty text, Prepend) merge at most 3 code points into one
 * (base + two marks, or a Hangul L·V·T syllable), so B is multiplied by 3 for them. Anything that can
 * delete text without bound (whitespace-dropping pre-tokenizers, Strip, fused unknown tokens, WordPiece's
 * whole-word [UNK], added tokens that absorb whitespace) makes the bound unsafe: then it is Infinity and
 * only the exact token count (after tokenizing) and the body limit apply; `reason` says why, for the log.
 */

export interface PromptBound {
  /** Upper bound on UTF-16 units of input per token; Infinity when none can be stated. */
  maxCharsPerToken: number;
  /** Why the bound is what it is (logged at start). */
  reason: string;
}

interface TokenizerJson {
  model?: { type?: string; vocab?: unknown; unk_token?: string | null; byte_fallback?: boolean; fuse_unk?: boolean };
  normalizer?: Component | null;
  pre_tokenizer?: Component | null;
  added_tokens?: { content?: string; lstrip?: boolean; rstrip?: boolean }[];
}

interface Component {
  type?: string;
  normalizers?: Component[];
  pretokenizers?: Component[];
  content?: string;
  behavior?: string;
}

const unbounded = (reason: string): PromptBound => ({ maxCharsPerToken: Number.POSITIVE_INFINITY, reason });

/** Normalizers that never shrink text by more than the composition factor. */
const MAPPING_NORMALIZERS = new Set(['NFC', 'NFKC', 'NFD', 'NFKD', 'Lowercase', 'Prepend', 'Replace']);
/** Pre-tokenizers that keep every byte of the input (they split or map, never drop). */
const KEEPING_PRETOKENIZERS = new Set(['ByteLevel', 'Metaspace', 'Split', 'Digits', 'Punctuation', 'UnicodeScripts']);
const COMPOSITION_FACTOR = 3;

/** Returns the name of the first component that can delete input, or undefined. */
function deleter(c: Component | null | undefined, allowed: ReadonlySet<string>): string | undefined {
  if (!c) return undefined;
  const children = c.normalizers ?? c.pretokenizers;
  if (c.type === 'Sequence') {
    for (const child of children ?? []) {
      const bad = deleter(child, allowed);
      if (bad) return bad;
    }
    return undefined;
  }
  if (!c.type || !allowed.has(c.type)) return c.type ?? 'an untyped component';
  if (c.type === 'Replace' && (c.content ?? '') === '') return 'Replace with empty content';
  if (c.type === 'Split' && c.behavior === 'Removed') return 'Split with behavior Removed';
  return undefined;
}

function vocabTokens(vocab: unknown): string[] {
  if (Array.isArray(vocab)) return vocab.map((v) => (Array.isArray(v) ? String(v[0]) : String(v)));
  if (vocab && typeof vocab === 'object') return Object.keys(vocab);
  return [];
}

export function promptBound(parsed: object): PromptBound {
  const json = parsed as TokenizerJson;
  const model = json.model ?? {};
  const type = model.type ?? 'unknown';
  if (type === 'WordPiece' || type === 'WordLevel') return unbounded(`${type}: an unknown word of any length is one token`);
  if (model.unk_token != null && !model.byte_fallback && (type === 'Unigram' || model.fuse_unk)) {
    return unbounded(`${type} fuses runs of unknown characters into one token`);
  }
  const added = json.added_tokens ?? [];
  if (added.some((t) => t.lstrip || t.rstrip)) return unbounded('an added token absorbs surrounding whitespace (lstrip/rstrip)');
  const badPre = deleter(json.pre_tokenizer, KEEPING_PRETOKENIZERS);
  if (badPre) return unbounded(`pre-tokenizer ${badPre} may drop input`);
  const badNorm = deleter(json.normalizer, MAPPING_NORMALIZERS);
  if (badNorm) return unbounded(`normalizer ${badNorm} may drop input`);

  // ByteLevel vocabularies spell each byte as one character (GPT-2's byte→unicode map), so their length is
  // their byte count; other vocabularies are measured in UTF-8 bytes, which can only overestimate.
  const byteLevel = JSON.stringify(json.pre_tokenizer ?? {}).includes('"ByteLevel"');
  let longest = 1;
  for (const token of [...vocabTokens(model.vocab), ...added.map((t) => t.content ?? '')]) {
    longest = Math.max(longest, byteLevel ? [...token].length : Buffer.byteLength(token, 'utf8'));
  }
  // A character outside the vocabulary (unknown or byte-fallback) still costs at least one token per 4 bytes.
  longest = Math.max(longest, 4);
  const factor = json.normalizer ? COMPOSITION_FACTOR : 1;
  return {
    maxCharsPerToken: longest * factor,
    reason: `longest token ${longest} bytes${factor > 1 ? ` × ${factor} for the normalizer` : ''}`,
  };
}

/** The least number of tokens `chars` UTF-16 units can encode to (0 when there is no bound). */
export function minTokens(chars: number, bound: PromptBound): number {
  return Number.isFinite(bound.maxCharsPerToken) ? Math.ceil(chars / bound.maxCharsPerToken) : 0;
}
