/**
 * A SentencePiece vocabulary from GGUF metadata (`tokenizer.ggml.model = llama`: TinyLlama, Llama 2, Mistral-style
 * files) as a Hugging Face `tokenizer.json` — the layout of Llama 2's own tokenizer.json:
 *   - normalizer: prepend "▁" (SentencePiece's dummy prefix), then every space → "▁"; no pre-tokenizer;
 *   - model: BPE over the pieces, `byte_fallback` onto the `<0xNN>` pieces, `<unk>` for anything else;
 *   - merges: derived from the pieces' scores, as transformers' SentencePieceExtractor derives them: every split
 *     of a piece into two pieces is a merge, ranked by the merged piece's score (highest first), ties by the ids
 *     of the left, then the right part. SentencePiece's BPE merges the pair whose result scores highest, so the
 *     ranks reproduce it (checked against the `sentencepiece` package on test/fixtures/tiny-gguf/spm-*.json);
 *   - decoder: "▁" → " ", bytes fallback, fuse, strip the one leading space.
 * Unlike transformers' own GGUF conversion (a Metaspace pre-tokenizer), a text starting with spaces keeps them
 * all, as SentencePiece and llama.cpp do.
 */
import { unsupportedGguf, type GgufFile } from '../runtime/gguf/index.ts';

const SPACE = '\u2581';

export interface SentencePieceModel {
  model: object;
  normalizer: object;
  preTokenizer: null;
  decoder: object;
}

/** `vocab` maps piece → id (already checked for duplicates); `unk` is the unknown piece's text, if any. */
export function sentencePieceModel(file: GgufFile, tokens: readonly string[], vocab: Readonly<Record<string, number>>, unk: string | undefined): SentencePieceModel {
  const scores = file.metadata.numberArray('tokenizer.ggml.scores');
  if (!scores || scores.length !== tokens.length) {
    throw unsupportedGguf(file.source, `a SentencePiece vocabulary needs one tokenizer.ggml.scores entry per token (${scores?.length ?? 0} for ${tokens.length})`);
  }
  const candidates: { left: string; right: string; score: number; l: number; r: number }[] = [];
  tokens.forEach((piece, id) => {
    const chars = [...piece]; // code points, as Python's str slicing
    const local: typeof candidates = [];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (Object.hasOwn(vocab, left) && Object.hasOwn(vocab, right)) local.push({ left, right, score: scores[id]!, l: vocab[left]!, r: vocab[right]! });
    }
    local.sort((a, b) => a.l - b.l || a.r - b.r);
    candidates.push(...local);
  });
  // Stable: equal scores keep the per-piece order above (Array.prototype.sort is stable).
  candidates.sort((a, b) => b.score - a.score);
  // llama.cpp's `add_space_prefix` (default true): SentencePiece's dummy prefix.
  const prefix = file.metadata.bool('tokenizer.ggml.add_space_prefix', true);
  return {
    normalizer: {
      type: 'Sequence',
      normalizers: [...(prefix ? [{ type: 'Prepend', prepend: SPACE }] : []), { type: 'Replace', pattern: { String: ' ' }, content: SPACE }],
    },
    preTokenizer: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: candidates.map((c) => [c.left, c.right]),
    },
  };
}
