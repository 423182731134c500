/**
 * The raw bytes of one vocabulary entry, for logprobs (`tokens` strings and chat's `bytes`). A token's
 * text alone is not enough: byte-level BPE splits multi-byte characters over tokens, and decoding such a
 * token by itself yields U+FFFD. Two vocabulary conventions cover the Hugging Face tokenizers served here:
 *   - byte-level (GPT-2, Llama 3, Qwen): every byte is written as one printable character
 *     (GPT-2's `bytes_to_unicode` table), so the entry's characters map back to bytes one to one;
 *   - SentencePiece style (Llama 2, SmolLM-era Metaspace): `▁` stands for a space and `<0xNN>` byte-fallback
 *     entries are single bytes; other entries are UTF-8 text.
 * Added (special) tokens are their content as UTF-8.
 */

/** GPT-2's byte → printable character table, inverted: character code → byte. */
function byteLevelDecoder(): Map<number, number> {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const map = new Map<number, number>();
  for (const b of printable) map.set(b, b);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) map.set(256 + extra++, b);
  return map;
}

interface DecoderConfig {
  type?: string;
  decoders?: DecoderConfig[];
}

const usesByteLevel = (d: DecoderConfig | null | undefined): boolean =>
  !!d && (d.type === 'ByteLevel' || (d.decoders ?? []).some(usesByteLevel));

export class TokenBytes {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly byteLevel: Map<number, number> | undefined;
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly entry: (id: number) => string | undefined,
    decoder: DecoderConfig | null | undefined,
    private readonly special: ReadonlySet<number>,
  ) {
    this.byteLevel = usesByteLevel(decoder) ? byteLevelDecoder() : undefined;
  }

  bytes(id: number): Uint8Array {
    let out = this.cache.get(id);
    if (!out) {
      out = this.compute(id);
      this.cache.set(id, out);
    }
    return out;
  }

  private compute(id: number): Uint8Array {
    const entry = this.entry(id);
    if (entry === undefined) return new Uint8Array(0);
    if (this.special.has(id)) return this.encoder.encode(entry);
    if (this.byteLevel) {
      const chars = [...entry];
      const bytes = chars.map((ch) => this.byteLevel!.get(ch.codePointAt(0)!));
      if (bytes.every((b) => b !== undefined)) return Uint8Array.from(bytes as number[]);
      return this.encoder.encode(entry);
    }
    const fallback = /^<0x([0-9A-Fa-f]{2})>$/.exec(entry);
    if (fallback) return Uint8Array.of(parseInt(fallback[1]!, 16));
    return this.encoder.encode(entry.replaceAll('\u2581', ' '));
  }
}

/**
 * OpenAI's string for a token in completions logprobs: its text when the bytes are valid UTF-8, else
 * `bytes:\xNN…` (the form OpenAI uses for partial characters).
 */
export function tokenString(bytes: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return 'bytes:' + Array.from(bytes, (b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  }
}
