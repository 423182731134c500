#!/usr/bin/env python3
"""Reference outputs of the real Hugging Face transformers models, for Patchbay's TypeScript tests.

Inputs : tools/.cache/tiny-gpt2-hf/, tools/.cache/tiny-llama-hf/
Outputs: test/fixtures/<model>/reference.json

Everything is float32 on CPU with HF's own model classes (eager attention), not the ONNX re-implementation.
Per prompt:
  input_ids                 tokenizer.json encoding (no BOS is added by this tokenizer)
  last_logits               full-vocab logits at the last prompt position
  decode_steps[i]           greedy decoding with HF's KV cache: `token` = argmax of the previous logits (the
                            token fed at step i, at position len(prompt)+i), `logits` = full-vocab logits
                            produced by feeding it. 4 steps.
  greedy                    model.generate(do_sample=False, max_new_tokens=20) -> new_token_ids, text
                            (continuation only, special tokens kept) and full_text; stops early on EOS id 0.
  min_top2_margin           smallest (top1 - top2) logit gap over every argmax taken for this prompt, so a test
                            can tell if a greedy choice is fragile at the stated tolerance.
all_position_logits: logits[seq][vocab] for prompts[0].
Logits are rounded to 6 decimals. tolerance: max abs difference a faithful runtime should meet.
"""
import json
import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache")
PROMPTS = ["ROMEO.\nBut soft,", "The capital of Veldor is", "To be, or not"]
N_STEPS = 4
N_GEN = 20


def r6(t):
    return np.round(t.detach().double().numpy(), 6).tolist()


def margin(logits):
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def make(name):
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir = os.path.join(CACHE, name + "-hf")
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
    out = dict(
        model=name,
        source=f"transformers {transformers.__version__}, torch {torch.__version__}",
        dtype="float32",
        tolerance=1e-4,
        vocab_size=model.config.vocab_size,
        notes="position_ids = 0..n-1, attention_mask all ones, no BOS added; decode_steps[i].token is the argmax "
              "of the previous logits (fed at position len(input_ids)+i); logits rounded to 6 decimals",
        prompts=[],
    )
    with torch.no_grad():
        for pi, text in enumerate(PROMPTS):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            x = torch.tensor([ids])
            n = len(ids)
            res = model(input_ids=x, attention_mask=torch.ones_like(x), position_ids=torch.arange(n)[None],
                        use_cache=True)
            logits = res.logits[0]
            if pi == 0:
                out["all_position_logits"] = dict(prompt_index=0, logits=r6(logits))
            last = logits[-1]
            margins = [margin(last)]
            cache = res.past_key_values
            steps = []
            prev = last
            for i in range(N_STEPS):
                t = int(prev.argmax())
                pos = n + i
                r = model(input_ids=torch.tensor([[t]]), attention_mask=torch.ones(1, pos + 1, dtype=torch.int64),
                          position_ids=torch.tensor([[pos]]), past_key_values=cache, use_cache=True)
                cache = r.past_key_values
                prev = r.logits[0, -1]
                margins.append(margin(prev))
                steps.append(dict(token=t, position=pos, logits=r6(prev)))
            g = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=N_GEN,
                               pad_token_id=0, eos_token_id=0, return_dict_in_generate=True, output_logits=True)
            new = g.sequences[0, n:].tolist()
            margins += [margin(l[0]) for l in g.logits]
            # generate must agree with the manual KV-cache loop on the shared prefix
            manual = [s["token"] for s in steps]
            assert new[:len(manual)] == manual[:len(new)], (new, manual)
            out["prompts"].append(dict(
                text=text, input_ids=ids, tokens=tok.convert_ids_to_tokens(ids),
                last_logits=r6(last), last_argmax=int(last.argmax()),
                decode_steps=steps,
                greedy=dict(max_new_tokens=N_GEN, new_token_ids=new, stopped_at_eos=bool(new and new[-1] == 0),
                            text=tok.decode(new), full_text=tok.decode(ids + new)),
                min_top2_margin=round(min(margins), 6),
            ))
            print(f"  [{name}] {text!r} -> {tok.decode(new)!r}  (min top2 margin {min(margins):.4f})")
    msgs = [{"role": "system", "content": "You are a player."}, {"role": "user", "content": "Speak."}]
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    out["chat_template_example"] = dict(messages=msgs, add_generation_prompt=True, rendered=rendered,
                                        input_ids=tok(rendered, add_special_tokens=False)["input_ids"])
    d = os.path.join(ROOT, "test", "fixtures", name)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "reference.json")
    with open(p, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"  wrote {p} ({os.path.getsize(p) / 1e6:.2f} MB)")


def main():
    torch.set_num_threads(2)
    for name in ("tiny-gpt2", "tiny-llama"):
        make(name)


if __name__ == "__main__":
    main()
