#!/usr/bin/env python3
"""Rebuild the Hugging Face (PyTorch) checkpoint of an embedded model from its committed ONNX file.

The HF checkpoints that `train_gpt2.py` / `build_llama.py` write (tools/.cache/<model>-hf/) are not committed:
they are large and GPT-2 training depends on wall-clock time. Every tool that needs the PyTorch weights of the
committed model (fine-tunes, adapters, reference fixtures) rebuilds them here instead, exactly: the ONNX
initializers keep the HF parameter names (tools/README.md, "ONNX contract"), so this only undoes the two layout
choices of the export (and follows the Identity nodes it uses for de-duplicated constants):
  * GPT-2 ties lm_head and wte: ONNX holds one `lm_head.weight` [n_embd, vocab] = wte^T.
  * Llama nn.Linear weights (and lm_head) are stored transposed, [d_in, d_out]; HF wants [d_out, d_in].
It then checks the rebuilt model against test/fixtures/<model>/reference.json (last-position logits of every
prompt, within the fixture's tolerance), so a wrong mapping cannot pass silently.

Usage: python tools/hf_from_onnx.py [tiny-gpt2|tiny-llama ...] [--out DIR]   (default: both, tools/.cache/)
"""
import argparse
import json
import os
import shutil

import numpy as np
import onnx
import torch
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]


def onnx_weights(model_dir):
    """Initializers by name, plus parameters the exporter de-duplicated into another initializer.

    The legacy exporter keeps one initializer for identical constants and names the others through Identity
    nodes (tiny-llama's RMSNorm weights are all ones: `model.layers.0.post_attention_layernorm.weight` is
    `Identity(model.layers.0.input_layernorm.weight)`).
    """
    graph = onnx.load(os.path.join(model_dir, "onnx", "model.onnx")).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            weights.setdefault(node.output[0], weights[node.input[0]])
    return weights


def hf_state_dict(model_type, weights, hf_keys):
    """Map ONNX initializers to the HF state dict of a model whose expected keys are `hf_keys`."""
    state = {}
    for key in hf_keys:
        if model_type == "gpt2" and key in ("transformer.wte.weight", "lm_head.weight"):
            state[key] = weights["lm_head.weight"].T  # tied: one [n_embd, vocab] initializer = wte^T
        elif model_type == "llama" and (key.endswith("_proj.weight") or key == "lm_head.weight"):
            state[key] = weights[key].T  # nn.Linear stored as [d_in, d_out] for MatMul
        elif key in weights:
            state[key] = weights[key]
        else:
            raise SystemExit(f"{key}: no ONNX initializer of that name")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in state.items()}


def check(model, name):
    ref_path = os.path.join(ROOT, "test", "fixtures", name, "reference.json")
    ref = json.load(open(ref_path))
    worst = 0.0
    with torch.no_grad():
        for p in ref["prompts"]:
            ids = torch.tensor([p["input_ids"]])
            got = model(ids).logits[0, -1].double().numpy()
            worst = max(worst, float(np.abs(got - np.array(p["last_logits"])).max()))
    if worst > ref["tolerance"]:
        raise SystemExit(f"{name}: rebuilt model differs from the reference logits by {worst:.2e}")
    return worst


def rebuild(name, out_root):
    from transformers import AutoConfig, AutoModelForCausalLM

    model_dir = os.path.join(ROOT, "models", name)
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager").eval()
    keys = list(model.state_dict().keys())
    model.load_state_dict(hf_state_dict(config.model_type, onnx_weights(model_dir), keys), strict=True)
    worst = check(model, name)
    out = os.path.join(out_root, name + "-hf")
    model.save_pretrained(out)
    for f in COPIED:
        shutil.copy(os.path.join(model_dir, f), out)
    print(f"{name}: {out} (max |logit diff| vs reference fixture {worst:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["tiny-gpt2", "tiny-llama"])
    ap.add_argument("--out", default=os.path.join(ROOT, "tools", ".cache"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in args.models:
        rebuild(name, args.out)


if __name__ == "__main__":
    main()
