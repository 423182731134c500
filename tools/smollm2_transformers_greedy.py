#!/usr/bin/env python3
"""Greedy chat answers of SmolLM2-135M-Instruct as transformers loads it from the same GGUF (gguf_file=).

transformers dequantizes the GGUF (gguf-py) and un-permutes Q/K itself, independently of Patchbay's TypeScript
importer, so its answers are the reference for `npm run model:smollm2`'s f32 model. Writes
tools/.cache/smollm2-transformers-greedy.json: per prompt, the chat-template ids (HF tokenizer converted from
the GGUF) and the greedy new ids/text (float32, eager attention, max_new_tokens tokens, stops at EOS).

  python tools/smollm2_transformers_greedy.py [--n 8] [--tokens 32]
"""
import argparse
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF_DIR = os.path.join(ROOT, "tools", ".cache", "smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF, dtype=torch.float32, attn_implementation="eager").eval()
    prompts = json.load(open(os.path.join(ROOT, "bench", "fixtures", "chat-prompts.json")))[: a.n]
    out = []
    with torch.no_grad():
        for p in prompts:
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids])
            g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=a.tokens,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
            new = g[0, len(ids):].tolist()
            out.append(dict(prompt=p, rendered=text, prompt_ids=ids, new_ids=new, text=tok.decode(new, skip_special_tokens=True)))
            print(f"{p!r} -> {out[-1]['text']!r}")
    path = os.path.join(ROOT, "tools", ".cache", "smollm2-transformers-greedy.json")
    json.dump(dict(gguf=GGUF, max_new_tokens=a.tokens, eos=tok.eos_token_id, answers=out), open(path, "w"), indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
