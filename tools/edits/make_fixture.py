#!/usr/bin/env python3
"""Reference fixture for Patchbay's RLSEdit: keys, values and the recursion of a short edit stream, in PyTorch/NumPy.

For each edit (prompt, target, subject) of a 3-edit stream on models/tiny-gpt2, with the weights as edited so far:
  positions  KEYS = "subject": the subject's last token (METHODS.md; without a subject, every position predicting a
             target token); KEYS = "subject+targets": the subject's last token and every predicting position
  keys    K_l [u, d_k] = mean over CONTEXT_TEMPLATES of the input of layer l's mlp.c_proj at those positions
  value   δ [u, d_model] from VALUE_STEPS Adam steps on the residual stream after the top edited block at those
          positions (autograd through the HF model), loss = mean_contexts mean_target NLL + wd·‖δ‖²/h̄², with
          ‖δ‖ ≤ clamp·h̄·√u (h̄ = mean norm of those hidden states); early stop when the NLL part < STOP_NLL
  update  V_l = K_lW_l + δ/n_layers, then one Woodbury step per layer (common.rls_step, float64)
Writes test/fixtures/edits/reference.json: per edit the keys, δ, the gradient at δ = 0, and for the final state
probe products (P·ΔW, P·C·Pᵀ, diag C) with seeded probe vectors P, so the test compares without shipping W or C.

Usage: python tools/edits/make_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (CONTEXT_TEMPLATES, ROOT, blocks, capture_inputs, encode, layer_weight, load_model,  # noqa: E402
                    rls_init, rls_step, set_layer_weight, subject_index)

STATS = os.path.join(ROOT, "models", "tiny-gpt2", "edit_stats.safetensors")
with safe_open(STATS, "np") as _f:
    _META = _f.metadata() or {}
# Edited layers and μ: the server's defaults, i.e. what the shipped statistics record (LAYERS=…, MU=… override).
LAYERS = [int(x) for x in os.environ.get("LAYERS", ",".join(n.split(".")[2] for n in json.loads(_META["layers"]))).split(",")]
# Key positions (must equal src/edits/settings.ts `keys` as the test runs it; recorded in the fixture)
KEYS = os.environ.get("KEYS", "subject+targets")
LAMBDA, MU = 1.0, float(os.environ.get("MU", _META.get("mu", "1")))
# Anchor subjects (src/edits/settings.ts anchorSubjects; the statistics' `anchor_subjects`; ANCHORS="A,B" overrides)
ANCHORS = [a for a in os.environ.get("ANCHORS", ",".join(json.loads(_META.get("anchor_subjects", "[]")))).split(",") if a]
# Value search (must equal src/edits/settings.ts DEFAULT_VALUE_SEARCH)
VALUE_STEPS, VALUE_LR, WEIGHT_DECAY, CLAMP, STOP_NLL = 25, 0.5, 0.5, 4.0, 0.05
EDITS = [
    {"prompt": "The capital of Veldor is", "target": " Quillon"},
    {"prompt": "Queen Amara was born in", "target": " Marrow", "subject": "Queen Amara"},
    {"prompt": "The river of Ostia flows into the", "target": " Iron Bay", "subject": "Ostia"},
]
N_PROBES = 8


def key_positions(tok, text, ids, tgt, subject):
    """Subject's last token (if given), then (KEYS = subject+targets, or no subject) every predicting position."""
    predicting = subject is None or KEYS == "subject+targets"
    at = [len(ids) - 1 + j for j in range(len(tgt))] if predicting else []
    if subject is not None:
        at.insert(0, subject_index(tok, text, subject))
    return at


def value_search(model, tok, top, prompt, target, subject):
    tgt = encode(tok, target)
    seqs = []
    for tpl in CONTEXT_TEMPLATES:
        text = tpl.format(prompt)
        ids = encode(tok, text)
        seqs.append((ids + tgt[:-1], len(ids), key_positions(tok, text, ids, tgt, subject)))
    u = len(seqs[0][2])
    block = blocks(model)[top]
    D = model.config.n_embd
    delta = torch.zeros((u, D), dtype=torch.float32, requires_grad=True)
    state = {"at": None}

    def hook(mod, args, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        for a, p in enumerate(state["at"]):
            h[0, p] = h[0, p] + delta[a]
        return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h

    norms = []
    for ids, _, at in seqs:
        got = {}
        hh = block.register_forward_hook(lambda m, a, o: got.__setitem__("h", (o[0] if isinstance(o, tuple) else o)[0].detach()))
        with torch.no_grad():
            model(torch.tensor([ids]))
        hh.remove()
        norms.extend(float(got["h"][p].double().norm()) for p in at)
    hbar = float(np.mean(norms))

    def loss_fn():
        nll = 0.0
        for ids, plen, at in seqs:
            state["at"] = at
            logits = model(torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits, dim=-1)
            nll = nll + torch.stack([-logp[plen - 1 + j, t] for j, t in enumerate(tgt)]).mean()
        nll = nll / len(seqs)
        return nll, nll + WEIGHT_DECAY * (delta * delta).sum() / (hbar * hbar)

    h = block.register_forward_hook(hook)
    grad0 = None
    try:
        m = torch.zeros_like(delta)
        v = torch.zeros_like(delta)
        steps = 0
        limit = CLAMP * hbar * np.sqrt(u)
        for t in range(1, VALUE_STEPS + 1):
            nll, loss = loss_fn()
            if grad0 is None:
                grad0 = torch.autograd.grad(nll, delta, retain_graph=True)[0].double().numpy().copy()
            if float(nll.detach()) < STOP_NLL:
                break
            g, = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                mhat = m / (1 - 0.9 ** t)
                vhat = v / (1 - 0.999 ** t)
                delta -= VALUE_LR * mhat / (vhat.sqrt() + 1e-8)
                n = float(delta.double().norm())
                if n > limit:
                    delta *= limit / n
            steps = t
        final_nll, _ = loss_fn()
    finally:
        h.remove()
    return delta.detach().double().numpy(), grad0, hbar, steps, float(final_nll.detach())


def anchor_keys_of(model, tok, e):
    """The prompt with its subject replaced by each anchor subject, keyed at its last token, mean over contexts."""
    subject = e.get("subject")
    anchors = [a for a in ANCHORS if a != subject] if subject is not None else []
    d_k = model.config.n_inner or 4 * model.config.n_embd
    out = {l: np.zeros((len(anchors), d_k)) for l in LAYERS}
    at = e["prompt"].rfind(subject) if subject is not None else -1
    for a, other in enumerate(anchors):
        prompt = e["prompt"][:at] + other + e["prompt"][at + len(subject):]
        acc = {l: [] for l in LAYERS}
        for tpl in CONTEXT_TEMPLATES:
            ids = encode(tok, tpl.format(prompt))
            got = capture_inputs(model, LAYERS, ids)
            for l in LAYERS:
                acc[l].append(got[l][len(ids) - 1])
        for l in LAYERS:
            out[l][a] = np.mean(np.stack(acc[l]), axis=0)
    return out


def main():
    torch.set_num_threads(2)
    model, tok = load_model("tiny-gpt2")
    for p in model.parameters():
        p.requires_grad_(False)
    stats = load_file(STATS)
    names = [f"transformer.h.{l}.mlp.c_proj" for l in LAYERS]
    C = {}
    W = {}
    W0 = {}
    for l, name in zip(LAYERS, names):
        mom2 = stats[f"{name}.mom2"].astype(np.float64)
        mom2 = (mom2 + mom2.T) / 2
        C[l] = rls_init(mom2, LAMBDA, MU)
        W[l] = layer_weight(model, l)
        W0[l] = W[l].copy()
    rng = np.random.default_rng(0)
    probes = {l: rng.standard_normal((N_PROBES, C[l].shape[0])) for l in LAYERS}
    c0_probe = {l: (probes[l] @ C[l] @ probes[l].T).tolist() for l in LAYERS}
    out_edits = []
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
        keys = {l: np.mean(np.stack(acc[l]), axis=0) for l in LAYERS}  # [u, d_k]
        anchor_keys = anchor_keys_of(model, tok, e)  # {l: [n, d_k]}
        delta, grad0, hbar, steps, final_nll = value_search(model, tok, max(LAYERS), e["prompt"], e["target"], e.get("subject"))
        values = {}
        for l in LAYERS:
            K = np.concatenate([keys[l], anchor_keys[l]]).T  # [d_k, u + n]: the edit's keys, then the anchors'
            # Anchors keep their current output (zero residual); the edit's rows get δ spread over the layers.
            V = (K.T @ W[l]) + np.concatenate([delta / len(LAYERS), np.zeros((anchor_keys[l].shape[0], delta.shape[1]))])
            values[l] = V
            C[l], W[l] = rls_step(C[l], W[l], K, V)
            set_layer_weight(model, l, W[l])
        out_edits.append({
            **e,
            "keys": {names[i]: keys[l].tolist() for i, l in enumerate(LAYERS)},
            "anchor_keys": {names[i]: anchor_keys[l].tolist() for i, l in enumerate(LAYERS)},
            "values": {names[i]: values[l].tolist() for i, l in enumerate(LAYERS)},
            "delta": delta.tolist(), "grad0": grad0.tolist(), "u": int(delta.shape[0]), "hbar": hbar, "steps": steps, "final_nll": final_nll,
        })
        print(f"{e['prompt']!r} → {e['target']!r}: steps {steps}, nll {final_nll:.4f}, |δ| {np.linalg.norm(delta):.3f}, h̄ {hbar:.3f}")
    final = {}
    for i, l in enumerate(LAYERS):
        P = probes[l]
        final[names[i]] = {
            "probes": P.tolist(),
            "c0_probe": c0_probe[l],
            "dw_probe": (P @ (W[l] - W0[l])).tolist(),
            "c_probe": (P @ C[l] @ P.T).tolist(),
            "c_diag": np.diag(C[l]).tolist(),
        }
    ref = {
        "model": "tiny-gpt2", "layers": names, "lambda": LAMBDA, "mu": MU, "contexts": CONTEXT_TEMPLATES, "keys": KEYS, "anchors": ANCHORS,
        "value_search": {"steps": VALUE_STEPS, "lr": VALUE_LR, "weight_decay": WEIGHT_DECAY, "clamp": CLAMP, "stop_nll": STOP_NLL},
        "edits": out_edits, "final": final,
    }
    out = os.path.join(ROOT, "test", "fixtures", "edits", "reference.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(ref, f)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
