#!/usr/bin/env python3
"""Evaluate the RWS patches (extracted by Patchbay's TypeScript CLI) in PyTorch, and write the reference
logits Patchbay's tests compare against.

Needs: tools/.cache/rws/{clean,typos,lower}/ (tools/rws/finetune.py) and adapters/rws-{typos,lower}/
(npm run rws:extract, see tools/rws/README.md).

1. Checks the TypeScript extraction against NumPy: RWS = τ_c − (aᵀτ_c/aᵀa)·a per tensor (float64) vs the
   dequantised patch; the error must be at most half a quantisation step.
2. Held-out loss (mean NLL per token, nats) on the held-out play text (tools/.cache/corpus/heldout.txt),
   clean and corrupted with each corruption (seed 2; training used seed 1), for: the base, the clean
   fine-tune, base + α·RWS for α ∈ {0.5, 1, 1.5} for each patch, both patches composed (α = 1 each), and
   the robust fine-tunes themselves. First EVAL_TOKENS tokens of each text, windows of 128.
3. test/fixtures/rws/reference.json: last-position logits (float32 PyTorch, 6 decimals) for two prompts
   under base + 1·RWS_typos and under base + 1·RWS_typos + 0.5·RWS_lower, with the dequantisation and
   the accumulation done exactly as Patchbay does them (float64 min + q·step rounded to float32; each
   α·v term added into a float32 delta; W = W0 + delta in float32).

Usage: nice -n 10 python tools/rws/eval_patches.py   (writes tools/rws/eval_report.json)
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corruption import CORRUPTIONS  # noqa: E402
from finetune import EOT, EOT_TEXT, base_dir, load  # noqa: E402

CACHE = os.path.join(ROOT, "tools", ".cache", "rws")
PATCHES = {"typos": os.path.join(ROOT, "adapters", "rws-typos"), "lower": os.path.join(ROOT, "adapters", "rws-lower")}
EVAL_TOKENS = int(os.environ.get("EVAL_TOKENS", "4096"))
SEQ = 128
PROMPTS = ["ROMEO.\nBut soft, what light", "KING HENRY.\nOnce more unto the brcach, dear friends"]


def read_patch(path):
    out = {}
    with safe_open(os.path.join(path, "patch.safetensors"), "np") as f:
        meta = f.metadata()
        levels = int(meta["levels"])
        for k in f.keys():
            if k.endswith(".rws.q"):
                m = k[: -len(".rws.q")]
                q = f.get_tensor(k).astype(np.float64)
                lo, hi = f.get_tensor(m + ".rws.range").astype(np.float64)
                step = (hi - lo) / (levels - 1)
                out[m] = (lo + q * step).astype(np.float32)  # float64 math, rounded to float32 once
    return meta, out


def patched(model, terms):
    """terms: [(dequantised patch dict, alpha)]; delta accumulated in float32 term by term, as Patchbay does."""
    deltas = {}
    for sig, alpha in terms:
        for m, v in sig.items():
            d = deltas.get(m, np.zeros_like(v))
            deltas[m] = (d.astype(np.float64) + alpha * v.astype(np.float64)).astype(np.float32)
    sd = model.state_dict()
    with torch.no_grad():
        for m, d in deltas.items():
            w = sd[m + ".weight"]
            w.copy_(w + torch.from_numpy(d))
    return model


def texts(tok):
    with open(os.path.join(ROOT, "tools", ".cache", "corpus", "heldout.txt"), encoding="utf-8") as f:
        raw = f.read()
    out = {}
    for name in ["clean", *CORRUPTIONS]:
        ids = []
        for doc in raw.split(EOT_TEXT):
            if not doc.strip():
                continue
            if name != "clean":
                doc = CORRUPTIONS[name](doc, 2)
            ids.extend(tok.encode(doc).ids)
            ids.append(EOT)
            if len(ids) >= EVAL_TOKENS:
                break
        out[name] = torch.tensor(ids[:EVAL_TOKENS], dtype=torch.long)
    return out


@torch.no_grad()
def loss(model, ids):
    total, n = 0.0, 0
    for s in range(0, len(ids) - 1, SEQ):
        x = ids[s:s + SEQ + 1]
        if len(x) < 2:
            break
        logits = model(input_ids=x[:-1].unsqueeze(0)).logits[0]
        total += torch.nn.functional.cross_entropy(logits, x[1:], reduction="sum").item()
        n += len(x) - 1
    return total / n


def check_extraction(sigs, metas):
    from safetensors.numpy import load_file
    base = load_file(os.path.join(base_dir(), "model.safetensors"))
    clean = load_file(os.path.join(CACHE, "clean", "model.safetensors"))
    report = {}
    for name, sig in sigs.items():
        robust = load_file(os.path.join(CACHE, name, "model.safetensors"))
        levels = int(metas[name]["levels"])
        worst = 0.0
        for m, v in sig.items():
            k = m + ".weight"
            tau = robust[k].astype(np.float64) - base[k].astype(np.float64)
            a = clean[k].astype(np.float64) - base[k].astype(np.float64)
            aa = float((a * a).sum())
            rws = tau - (float((a * tau).sum()) / aa) * a if aa > 0 else tau
            step = (rws.max() - rws.min()) / (levels - 1)
            err = float(np.abs(v.astype(np.float64) - rws).max())
            worst = max(worst, err / step if step > 0 else 0.0)
        report[name] = {"modules": len(sig), "max_error_in_steps": round(worst, 4)}
        assert worst <= 0.5 + 1e-3, f"{name}: extraction error {worst} steps"
    return report


def main():
    torch.set_num_threads(2)
    t0 = time.time()
    tok = Tokenizer.from_file(os.path.join(base_dir(), "tokenizer.json"))
    metas, sigs = {}, {}
    for name, path in PATCHES.items():
        metas[name], sigs[name] = read_patch(path)
    report = {"eval_tokens": EVAL_TOKENS, "extraction_check": check_extraction(sigs, metas)}
    print(report, flush=True)

    # Reference logits for the tests.
    fixtures = {"prompts": [], "configs": []}
    configs = [("typos*1", [("typos", 1.0)]), ("typos*1+lower*0.5", [("typos", 1.0), ("lower", 0.5)])]
    for name, terms in configs:
        m = patched(load(base_dir()).eval(), [(sigs[p], a) for p, a in terms])
        entry = {"name": name, "patches": [{"id": f"rws-{p}", "alpha": a} for p, a in terms], "logits": []}
        for prompt in PROMPTS:
            ids = tok.encode(prompt).ids
            with torch.no_grad():
                lg = m(input_ids=torch.tensor([ids])).logits[0, -1]
            entry["logits"].append([round(float(x), 6) for x in lg])
        fixtures["configs"].append(entry)
    fixtures["prompts"] = [tok.encode(p).ids for p in PROMPTS]
    os.makedirs(os.path.join(ROOT, "test", "fixtures", "rws"), exist_ok=True)
    with open(os.path.join(ROOT, "test", "fixtures", "rws", "reference.json"), "w") as f:
        json.dump(fixtures, f)

    data = texts(tok)
    rows = []

    def row(label, model):
        r = {"model": label, **{k: round(loss(model, ids), 4) for k, ids in data.items()}}
        rows.append(r)
        print(r, f"{time.time() - t0:.0f}s", flush=True)

    row("base", load(base_dir()).eval())
    row("clean fine-tune", load(os.path.join(CACHE, "clean")).eval())
    for name in PATCHES:
        for alpha in (0.5, 1.0, 1.5):
            row(f"base + {alpha}·RWS_{name}", patched(load(base_dir()).eval(), [(sigs[name], alpha)]))
    row("base + RWS_typos + RWS_lower", patched(load(base_dir()).eval(), [(sigs["typos"], 1.0), (sigs["lower"], 1.0)]))
    for name in PATCHES:
        row(f"robust fine-tune ({name})", load(os.path.join(CACHE, name)).eval())
    report["rows"] = rows
    report["seconds"] = round(time.time() - t0)
    with open(os.path.join(ROOT, "tools", "rws", "eval_report.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
