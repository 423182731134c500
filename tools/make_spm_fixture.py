#!/usr/bin/env python3
"""A SentencePiece vocabulary in a GGUF (tokenizer.ggml.model = llama, as TinyLlama / Llama 2 files carry it),
and the reference token ids for a set of strings, for the importer's SentencePiece → tokenizer.json conversion.

Outputs (committed, ~20 KB):
  test/fixtures/tiny-gguf/spm-tokenizer.gguf   metadata only (no tensors): tokens, scores, token types,
                                               bos/eos/unk ids, add_bos_token, a chat template
  test/fixtures/tiny-gguf/spm-reference.json   per string: the ids the SentencePiece model itself gives
                                               (`sp.encode`, no BOS) — the tokenizer llama.cpp reproduces

The vocabulary is trained here by the `sentencepiece` package (BPE, byte fallback, up to 700 pieces) on a few
public-domain paragraphs below, with the special ids of Llama 2's (<unk> 0, <s> 1, </s> 2); bytes <0x00>…<0xFF>
are pieces 3…258, as in Llama 2. transformers' GGUF loader (`gguf_file=`) is used as a cross-check only: its
LlamaTokenizerFast conversion is compared with SentencePiece on every string and any difference printed (it
drops one of two leading spaces, which SentencePiece and llama.cpp keep; Patchbay follows SentencePiece).

    pip install sentencepiece gguf transformers   # tools/ only; CI uses the committed outputs
    python tools/make_spm_fixture.py
"""
import json
import os
import tempfile

import gguf
import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "tiny-gguf")

CORPUS = """Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in
Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a great civil
war, testing whether that nation, or any nation so conceived and so dedicated, can long endure. We are met on a
great battle-field of that war. We have come to dedicate a portion of that field, as a final resting place for
those who here gave their lives that that nation might live. It is altogether fitting and proper that we should
do this.
To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings and arrows of
outrageous fortune, or to take arms against a sea of troubles, and by opposing end them. To die: to sleep; no
more; and by a sleep to say we end the heart-ache and the thousand natural shocks that flesh is heir to.
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness,
it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of
Darkness, it was the spring of hope, it was the winter of despair.
The capital of France is Paris. The capital of Italy is Rome. In 1969, 2 people walked on the Moon; 12 did by 1972.
"""

STRINGS = [
    "Hello world",
    "The capital of France is Paris.",
    " leading space and  double  spaces",
    "To be, or not to be: that is the question!",
    "numbers 1969 and 3.14159, 42",
    "line one\nline two\n\nthree",
    "tabs\tand\ttrailing  ",
    "Ünïcödé: café, naïve, Straße — “quotes”",
    "emoji 🙂 and 日本語 (bytes fallback)",
    "",
    "x",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}"
)


def train(work):
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(CORPUS)
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, model_type="bpe", vocab_size=700, byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, hard_vocab_limit=False,
        add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        split_digits=True, allow_whitespace_only_pieces=True, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def token_type(sp, i):
    if sp.is_unknown(i):
        return gguf.TokenType.UNKNOWN
    if sp.is_control(i):
        return gguf.TokenType.CONTROL
    if sp.is_byte(i):
        return gguf.TokenType.BYTE
    if sp.is_unused(i):
        return gguf.TokenType.UNUSED
    return gguf.TokenType.NORMAL


def write_gguf(sp, path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("spm-tokenizer-fixture")
    w.add_tokenizer_model("llama")
    n = sp.get_piece_size()
    w.add_token_list([sp.id_to_piece(i).encode("utf-8") for i in range(n)])
    w.add_token_scores([float(sp.get_score(i)) for i in range(n)])
    w.add_token_types([int(token_type(sp, i)) for i in range(n)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def cross_check(path, reference):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        print("transformers not installed: cross-check skipped")
        return
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    for r in reference:
        got = tok.encode(r["text"], add_special_tokens=False)
        if got != r["ids"]:
            print(f"transformers differs on {r['text']!r}: {got} vs sentencepiece {r['ids']}")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        sp = train(work)
        path = os.path.join(OUT, "spm-tokenizer.gguf")
        write_gguf(sp, path)
        reference = [{"text": s, "ids": sp.encode(s), "pieces": sp.encode(s, out_type=str)} for s in STRINGS]
        meta = {"vocab_size": sp.get_piece_size(), "bos_id": 1, "eos_id": 2, "unk_id": 0, "strings": reference}
        with open(os.path.join(OUT, "spm-reference.json"), "w") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
        cross_check(path, reference)
        print(f"wrote {path} ({sp.get_piece_size()} pieces) and spm-reference.json")


if __name__ == "__main__":
    main()
