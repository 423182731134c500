#!/usr/bin/env python3
"""Fine-tune the embedded tiny GPT-2 for the RWS fixtures: once on clean play text, once per corruption.

Every run starts from the same base (tools/.cache/tiny-gpt2-hf or /work/hf-cache/tiny-gpt2-hf), sees the same
training text (tools/.cache/corpus/train.txt, corrupted by tools/rws/corruption.py with seed 1 for the
robust runs), uses the same seed, step count and optimiser, and trains only the weights of the transformer
blocks' linear layers (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj). Embeddings (tied with lm_head),
layer norms and biases stay frozen, so the whole task vector lives in tensors an RWS patch can carry.

Outputs (not committed): tools/.cache/rws/<run>/model.safetensors (HF checkpoint) for run in
clean, typos, lower; tools/rws/finetune_report.json (committed: steps, seconds, final loss per run).

Usage: nice -n 10 python tools/rws/finetune.py [--steps 120]
"""
import argparse
import json
import os
import sys
import torch
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corruption import CORRUPTIONS  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tools"))
from lm_training import train_lm  # noqa: E402

CACHE = os.path.join(ROOT, "tools", ".cache")
OUT = os.path.join(CACHE, "rws")
EOT_TEXT, EOT = "<|endoftext|>", 0
SEQ, BATCH, LR, SEED = 128, 8, 1e-3, 7
TRAINABLE = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def base_dir():
    for d in (os.path.join(CACHE, "tiny-gpt2-hf"), "/work/hf-cache/tiny-gpt2-hf"):
        if os.path.exists(os.path.join(d, "model.safetensors")):
            return d
    raise SystemExit("no tiny-gpt2 HF checkpoint: run tools/hf_from_onnx.py")


def encode(tok, text, corruption, seed):
    """Documents are corrupted one by one so the <|endoftext|> separators survive."""
    ids = []
    for doc in text.split(EOT_TEXT):
        if not doc.strip():
            continue
        if corruption:
            doc = CORRUPTIONS[corruption](doc, seed)
        ids.extend(tok.encode(doc).ids)
        ids.append(EOT)
    return torch.tensor(ids, dtype=torch.long)


def load(path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def finetune(run, ids, steps):
    model = load(base_dir())
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith(TRAINABLE) and ".h." in name)
        if p.requires_grad:
            params.append(p)
    seconds, ema = train_lm(model, params, ids, steps, LR, SEED, seq=SEQ, batch=BATCH, log_every=50, tag=run)
    out = os.path.join(OUT, run)
    model.save_pretrained(out)
    return {"steps": steps, "seconds": round(seconds, 1), "final_loss_ema": round(ema, 4),
            "trainable_params": sum(p.numel() for p in params)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--runs", default="clean,typos,lower")
    ap.add_argument("--report", default=os.path.join(ROOT, "tools", "rws", "finetune_report.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    tok = Tokenizer.from_file(os.path.join(base_dir(), "tokenizer.json"))
    with open(os.path.join(CACHE, "corpus", "train.txt"), encoding="utf-8") as f:
        text = f.read()
    report_path = args.report
    for run in args.runs.split(","):
        ids = encode(tok, text, None if run == "clean" else run, seed=1)
        print(f"{run}: {len(ids)} training tokens", flush=True)
        entry = {"corruption": None if run == "clean" else run, "tokens": len(ids), "seq": SEQ,
                 "batch": BATCH, "lr": LR, "seed": SEED, **finetune(run, ids, args.steps)}
        # Re-read before writing: runs may go in parallel processes sharing one report.
        report = json.load(open(report_path)) if os.path.exists(report_path) else {}
        report[run] = entry
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2)
        print(json.dumps(entry), flush=True)


if __name__ == "__main__":
    main()
