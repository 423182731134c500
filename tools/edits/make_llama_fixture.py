#!/usr/bin/env python3
"""Reference fixture for the Llama side of Patchbay's RLSEdit (src/edits/llama-upper.ts), in PyTorch/NumPy.

Two parts, both on models/tiny-llama (HF copy in tools/.cache/tiny-llama-hf, rebuilt from the ONNX):

1. `blocks`: the upper-stack gradient alone. For a teacher-forced prompt + target, the residual stream at the
   input of block b (b = 0: the token embeddings, gradient through both blocks; b = 1: through the top block),
   a seeded random δ added at the key positions, and the mean target NLL and ∂NLL/∂δ by autograd with the
   model in float64 (the float32 weights and hidden states are exact in float64; HF computes RoPE's cos/sin in
   float32, the TypeScript in float64, the only difference).
2. `edits`: a 3-edit stream with the default edited layer (model.layers.0.mlp.down_proj, the one the shipped
   edit_stats.safetensors covers): keys, the gradient at δ = 0, the searched δ and values, Adam steps, and the
   final RLS state as probe products — the same recursion and search as tools/edits/make_fixture.py (GPT-2),
   whose value_search and key_positions are reused as they are.

Writes test/fixtures/edits/llama-reference.json.
Usage: PATCHBAY_HF_CACHE=tools/.cache nice -n 10 python tools/edits/make_llama_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CONTEXT_TEMPLATES, ROOT, blocks, capture_inputs, encode, layer_weight, load_model, rls_init, rls_step, set_layer_weight  # noqa: E402
from make_fixture import (CLAMP, LAMBDA, MU, N_PROBES, STOP_NLL, VALUE_LR, VALUE_STEPS, WEIGHT_DECAY,  # noqa: E402
                          key_positions, value_search)

MODEL = "tiny-llama"
LAYERS = [0]
EDITS = [
    {"prompt": "The capital of Veldor is", "target": " Quillon"},
    {"prompt": "Queen Amara was born in", "target": " Marrow", "subject": "Queen Amara"},
    {"prompt": "The river of Ostia flows into the", "target": " Iron Bay", "subject": "Ostia"},
]
BLOCK_CASE = {"prompt": "Hark. The river of Ostia flows into the", "target": " Iron Bay", "subject": "Ostia"}


def block_gradients(model, tok):
    """Part 1: NLL and ∂NLL/∂δ with δ added to the input of block b, for b = 0 and 1, in float64."""
    text = BLOCK_CASE["prompt"]
    ids = encode(tok, text)
    tgt = encode(tok, BLOCK_CASE["target"])
    full = ids + tgt[:-1]
    at = key_positions(tok, text, ids, tgt, BLOCK_CASE["subject"])
    mdl = model.double()
    rng = np.random.default_rng(1)
    out = []
    for b in range(len(blocks(mdl))):
        got = {}
        def grab(m, args, kw):
            got["h"] = (args[0] if args else kw["hidden_states"])[0].detach().clone()

        h = blocks(mdl)[b].register_forward_pre_hook(grab, with_kwargs=True)
        with torch.no_grad():
            mdl(torch.tensor([full]))
        h.remove()
        # The TypeScript side gets the hidden state as float32 (the probe's output): round it here alike.
        hidden = got["h"].float().double()
        D = hidden.shape[1]
        delta = torch.tensor(rng.standard_normal((len(at), D)) * 0.5, dtype=torch.float64, requires_grad=True)

        def pre(m, args, kw):
            x = hidden.clone().unsqueeze(0)
            for a, p in enumerate(at):
                x[0, p] = x[0, p] + delta[a]
            if args:
                return (x,) + tuple(args[1:]), kw
            kw = dict(kw)
            kw["hidden_states"] = x
            return args, kw

        h = blocks(mdl)[b].register_forward_pre_hook(pre, with_kwargs=True)
        try:
            logits = mdl(torch.tensor([full])).logits[0]
        finally:
            h.remove()
        logp = torch.log_softmax(logits, dim=-1)
        nll = torch.stack([-logp[len(ids) - 1 + j, t] for j, t in enumerate(tgt)]).mean()
        g, = torch.autograd.grad(nll, delta)
        out.append({
            "first_block": b, "ids": full, "at": at, "targets": [{"pos": len(ids) - 1 + j, "token": t} for j, t in enumerate(tgt)],
            "hidden": hidden.numpy().tolist(), "delta": delta.detach().numpy().tolist(), "nll": float(nll), "grad": g.numpy().tolist(),
        })
        print(f"block {b}: nll {float(nll):.5f}, |grad| {float(g.norm()):.5f}")
    model.float()
    return out


def edit_stream(model, tok):
    """Part 2: the 3-edit stream (as make_fixture.py does for GPT-2)."""
    for p in model.parameters():
        p.requires_grad_(False)
    # make_fixture.value_search reads the width under GPT-2's config name.
    model.config.n_embd = model.config.hidden_size
    stats = load_file(os.path.join(ROOT, "models", MODEL, "edit_stats.safetensors"))
    names = [f"model.layers.{l}.mlp.down_proj" for l in LAYERS]
    C, W, W0 = {}, {}, {}
    for l, name in zip(LAYERS, names):
        mom2 = stats[f"{name}.mom2"].astype(np.float64)
        C[l] = rls_init((mom2 + mom2.T) / 2, LAMBDA, MU)
        W[l] = layer_weight(model, l)
        W0[l] = W[l].copy()
    rng = np.random.default_rng(0)
    probes = {l: rng.standard_normal((N_PROBES, C[l].shape[0])) for l in LAYERS}
    c0_probe = {l: (probes[l] @ C[l] @ probes[l].T).tolist() for l in LAYERS}
    edits = []
    for e in EDITS:
        tgt = encode(tok, e["target"])
        acc = {l: [] for l in LAYERS}
        for tpl in CONTEXT_TEMPLATES:
            text = tpl.format(e["prompt"])
            ids = encode(tok, text)
            at = key_positions(tok, text, ids, tgt, e.get("subject"))
            got = capture_inputs(model, LAYERS, ids + tgt[:-1])
            for l in LAYERS:
                acc[l].append(got[l][at])
        keys = {l: np.mean(np.stack(acc[l]), axis=0) for l in LAYERS}
        delta, grad0, hbar, steps, final_nll = value_search(model, tok, max(LAYERS), e["prompt"], e["target"], e.get("subject"))
        values = {}
        for l in LAYERS:
            K = keys[l].T
            values[l] = (K.T @ W[l]) + delta / len(LAYERS)
            C[l], W[l] = rls_step(C[l], W[l], K, values[l])
            set_layer_weight(model, l, W[l])
        edits.append({
            **e,
            "keys": {names[i]: keys[l].tolist() for i, l in enumerate(LAYERS)},
            "values": {names[i]: values[l].tolist() for i, l in enumerate(LAYERS)},
            "delta": delta.tolist(), "grad0": grad0.tolist(), "u": int(delta.shape[0]), "hbar": hbar, "steps": steps, "final_nll": final_nll,
        })
        print(f"{e['prompt']!r} → {e['target']!r}: steps {steps}, nll {final_nll:.4f}, |δ| {np.linalg.norm(delta):.3f}")
    final = {}
    for i, l in enumerate(LAYERS):
        P = probes[l]
        final[names[i]] = {"probes": P.tolist(), "c0_probe": c0_probe[l], "dw_probe": (P @ (W[l] - W0[l])).tolist(),
                           "c_probe": (P @ C[l] @ P.T).tolist(), "c_diag": np.diag(C[l]).tolist()}
    return names, edits, final


def main():
    torch.set_num_threads(2)
    model, tok = load_model(MODEL)
    blocks_ref = block_gradients(model, tok)
    names, edits, final = edit_stream(model, tok)
    ref = {
        "model": MODEL, "layers": names, "lambda": LAMBDA, "mu": MU, "contexts": CONTEXT_TEMPLATES,
        "value_search": {"steps": VALUE_STEPS, "lr": VALUE_LR, "weight_decay": WEIGHT_DECAY, "clamp": CLAMP, "stop_nll": STOP_NLL},
        "blocks": blocks_ref, "edits": edits, "final": final,
    }
    out = os.path.join(ROOT, "test", "fixtures", "edits", "llama-reference.json")
    with open(out, "w") as f:
        json.dump(ref, f)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
