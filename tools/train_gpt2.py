#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer and the tiny GPT-2 that Patchbay embeds as its default model.

Inputs : tools/.cache/corpus/{train,heldout}.txt, models/facts.jsonl   (from tools/corpus.py)
Outputs: tools/.cache/tokenizer/          tokenizer.json, tokenizer_config.json (shared with tiny-llama)
         tools/.cache/tiny-gpt2-hf/       HF checkpoint (model.safetensors, config.json, generation_config.json,
                                          tokenizer files) -- NOT committed, regenerate with this script
         models/tiny-gpt2/training_report.json

Usage: python tools/train_gpt2.py [--minutes 12] [--seed 0]
The loop is time-based (fixed seed, but the number of steps depends on machine speed).
"""
import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache")
CORPUS = os.path.join(CACHE, "corpus")
TOK_DIR = os.path.join(CACHE, "tokenizer")
HF_DIR = os.path.join(CACHE, "tiny-gpt2-hf")
REPORT = os.path.join(ROOT, "models", "tiny-gpt2", "training_report.json")
EOT = "<|endoftext|>"
VOCAB = 4096
SEQ = 128
MAX_POS = 256
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
SAMPLE_PROMPTS = ["ROMEO.\nBut soft,", "HAMLET.\nTo be, or not", "KING LEAR.\n", "The capital of Veldor is",
                  "FIRST WITCH.\nWhen shall we"]


def load_facts():
    with open(os.path.join(ROOT, "models", "facts.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]


def train_tokenizer(train_text, facts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    docs = train_text.split(EOT) + [f["sentence"] for f in facts] * 5
    tok.train_from_iterator(docs, trainer=trainer)
    assert tok.token_to_id(EOT) == 0 and tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    os.makedirs(TOK_DIR, exist_ok=True)
    tok.save(os.path.join(TOK_DIR, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT, "eos_token": EOT, "pad_token": EOT, "unk_token": EOT,
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_POS,
        "padding_side": "left",
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {"0": {"content": EOT, "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True}},
    }
    with open(os.path.join(TOK_DIR, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return tok


def encode_docs(tok, text):
    ids = []
    for d in text.split(EOT):
        if d.strip():
            ids.extend(tok.encode(d).ids)
            ids.append(0)
    return np.array(ids, dtype=np.int64)


def fact_stream(tok, facts, copies, rng):
    ids = []
    for _ in range(copies):
        order = list(range(len(facts)))
        rng.shuffle(order)
        for i in range(0, len(order), 8):
            para = "\n".join(facts[j]["sentence"] for j in order[i:i + 8])
            ids.extend(tok.encode(para + "\n\n").ids)
            ids.append(0)
    return np.array(ids, dtype=np.int64)


@torch.no_grad()
def heldout_loss(model, ids, bs=32):
    model.eval()
    n = (len(ids) - 1) // SEQ
    x = torch.from_numpy(ids[: n * SEQ + 1])
    tot, cnt = 0.0, 0
    for i in range(0, n, bs):
        rows = range(i, min(n, i + bs))
        inp = torch.stack([x[r * SEQ:(r + 1) * SEQ] for r in rows])
        tgt = torch.stack([x[r * SEQ + 1:(r + 1) * SEQ + 1] for r in rows])
        logits = model(input_ids=inp).logits
        tot += torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), reduction="sum").item()
        cnt += tgt.numel()
    model.train()
    return tot / cnt


@torch.no_grad()
def fact_recall(model, tok, facts):
    """Fraction of facts whose object's first token is the greedy next token after the sentence prefix."""
    model.eval()
    hits = 0
    for f in facts:
        s = f["sentence"]
        k = s.rfind(f["object"])
        prefix = s[:k].rstrip()
        p_ids = tok.encode(prefix).ids
        full = tok.encode(s).ids
        target = full[len(p_ids)] if full[:len(p_ids)] == p_ids and len(full) > len(p_ids) else None
        logits = model(input_ids=torch.tensor([p_ids])).logits[0, -1]
        hits += int(target is not None and int(logits.argmax()) == target)
    model.train()
    return hits / len(facts)


@torch.no_grad()
def samples(model, tok, n_new=60):
    model.eval()
    out = {}
    for p in SAMPLE_PROMPTS:
        ids = torch.tensor([tok.encode(p).ids])
        g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False,
                           pad_token_id=0)
        out[p] = tok.decode(g[0].tolist())
    model.train()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--fact-frac", type=float, default=0.12)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    nprng = np.random.default_rng(args.seed)

    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    train_text = open(os.path.join(CORPUS, "train.txt")).read()
    held_text = open(os.path.join(CORPUS, "heldout.txt")).read()
    facts = load_facts()
    t0 = time.time()
    tok = train_tokenizer(train_text, facts)
    train_ids = encode_docs(tok, train_text)
    held_ids = encode_docs(tok, held_text)
    f_ids = fact_stream(tok, facts, 40, rng)
    print(f"tokenizer+encode {time.time() - t0:.1f}s: train {len(train_ids)} tok, heldout {len(held_ids)} tok, "
          f"facts stream {len(f_ids)} tok, chars/token {len(train_text) / len(train_ids):.2f}", flush=True)

    cfg = GPT2Config(vocab_size=VOCAB, n_positions=MAX_POS, n_embd=args.n_embd, n_layer=args.n_layer, n_head=4,
                     n_inner=None, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                     tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    budget = args.minutes * 60
    warmup = 100
    tr = torch.from_numpy(train_ids)
    fa = torch.from_numpy(f_ids)

    def batch():
        rows = []
        for _ in range(args.batch):
            src = fa if nprng.random() < args.fact_frac else tr
            s = int(nprng.integers(0, len(src) - SEQ - 1))
            rows.append(src[s:s + SEQ + 1])
        b = torch.stack(rows)
        return b[:, :-1], b[:, 1:]

    model.train()
    start = time.time()
    step, ema = 0, None
    log = []
    while True:
        el = time.time() - start
        if el > budget:
            break
        frac = el / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch()
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        if step % 100 == 0:
            print(f"step {step} t={el:.0f}s lr={lr:.2e} train_loss(ema)={ema:.3f}", flush=True)
            log.append(dict(step=step, seconds=round(el, 1), train_loss_ema=round(ema, 4)))
    train_secs = time.time() - start
    hl = heldout_loss(model, held_ids)
    recall = fact_recall(model, tok, facts)
    smp = samples(model, tok)
    report = dict(
        params=n_params, config=dict(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                                     n_positions=cfg.n_positions, vocab_size=VOCAB),
        seed=args.seed, steps=step, batch=args.batch, seq_len=SEQ, tokens_seen=step * args.batch * SEQ,
        train_seconds=round(train_secs, 1), lr=args.lr, fact_fraction=args.fact_frac,
        train_tokens=int(len(train_ids)), heldout_tokens=int(len(held_ids)),
        heldout_loss_nats_per_token=round(hl, 4), uniform_baseline_nats=round(math.log(VOCAB), 4),
        heldout_perplexity=round(math.exp(hl), 2),
        fact_first_token_recall=round(recall, 3),
        greedy_samples=smp, log=log,
        torch=torch.__version__, transformers=__import__("transformers").__version__,
    )
    print(json.dumps({k: v for k, v in report.items() if k != "log"}, indent=1), flush=True)
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w") as f:
        json.dump(report, f, indent=1)
    os.makedirs(HF_DIR, exist_ok=True)
    model.save_pretrained(HF_DIR, safe_serialization=True)
    GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0, do_sample=False,
                     max_length=MAX_POS).save_pretrained(HF_DIR)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(TOK_DIR)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(TOK_DIR, name)) as src, open(os.path.join(HF_DIR, name), "w") as dst:
            dst.write(src.read())
    assert hf_tok.encode("To be, or not") == tok.encode("To be, or not").ids
    print("saved", HF_DIR)


if __name__ == "__main__":
    main()
