#!/usr/bin/env python3
"""Key statistics for RLSEdit: E[kkᵀ] of the edited layers' inputs over the training corpus, shipped with the model.

RLSEdit's anchor term μ²‖K0ᵀ(W − W0)‖² needs K0K0ᵀ, the second moment of the keys the layer sees in ordinary
text. We estimate it as E[kkᵀ] = (1/N)·Σ k kᵀ over N corpus tokens (float64 accumulation) and store it as F16
(2 MB per 1024-wide layer; the matrix is only a regulariser, and F16 keeps the committed file small).
μ² carries the scale (K0K0ᵀ := E[kkᵀ], not N·E[kkᵀ]).

Output: models/<model>/edit_stats.safetensors with, per edited module `<m>` (HF module path),
  `<m>.mom2` F16 [d_k, d_k] and metadata {tokens, corpus, layers, note, mu?}. The server edits the `layers`
  listed here by default, and uses `mu` (if given) as its default μ: μ² multiplies these statistics, so the μ
  that suits them is a property of the shipped file (chosen by `npm run eval:edits`, see BENCHMARKS.md).

Usage: python tools/edits/edit_stats.py [--model tiny-gpt2] [--layers 0,1] [--mu 10] [--anchors A,B] [--tokens 60000] [--out path]
       python tools/edits/edit_stats.py --update FILE [--mu 10] [--anchors A,B] [--out path]   (defaults only)
  (tiny-gpt2 as shipped: --layers 0,1 --mu 10)
Input: tools/.cache/corpus/train.txt (tools/corpus.py) and the HF checkpoint in /work/hf-cache (tools/hf_from_onnx.py).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, blocks, capture_inputs, encode, load_model, mlp_out_module  # noqa: E402

EOT = "<|endoftext|>"


def module_path(model, layer):
    return f"transformer.h.{layer}.mlp.c_proj" if hasattr(model, "transformer") else f"model.layers.{layer}.mlp.down_proj"


def record_defaults(meta, args):
    if args.mu is not None:
        meta["mu"] = repr(args.mu)
    if args.anchors is not None:
        meta["anchor_subjects"] = json.dumps([a for a in args.anchors.split(",") if a])


def update_defaults(args):
    with safe_open(args.update, "np") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    record_defaults(meta, args)
    out = args.out or args.update
    save_file(tensors, out, metadata=meta)
    print(f"wrote {out}: defaults {({k: meta[k] for k in ('mu', 'anchor_subjects') if k in meta})}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-gpt2")
    ap.add_argument("--layers", default="0,1")
    ap.add_argument("--mu", type=float, default=None, help="default μ recorded with the statistics")
    ap.add_argument("--anchors", default=None, help="default anchor subjects (comma-separated) recorded with them")
    ap.add_argument("--tokens", type=int, default=60000)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--out", default=None, help="default: models/<model>/edit_stats.safetensors")
    ap.add_argument("--update", default=None, metavar="FILE",
                    help="only (re)write the recorded defaults (--mu, --anchors) of FILE, keeping its statistics")
    args = ap.parse_args()
    if args.update:
        return update_defaults(args)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    layers = [int(x) for x in args.layers.split(",")]
    model, tok = load_model(args.model)
    text = open(os.path.join(ROOT, "tools", ".cache", "corpus", "train.txt")).read()
    docs = [d for d in text.split(EOT) if d.strip()]
    # Deterministic spread over the corpus: every play contributes chunks.
    ids = []
    for d in docs:
        ids.extend(encode(tok, d))
    n_chunks = args.tokens // args.chunk
    stride = max(1, (len(ids) - args.chunk) // n_chunks)
    acc = {l: None for l in layers}
    count = 0
    for c in range(n_chunks):
        chunk = ids[c * stride: c * stride + args.chunk]
        got = capture_inputs(model, layers, chunk)
        for l in layers:
            k = got[l]
            m = k.T @ k
            acc[l] = m if acc[l] is None else acc[l] + m
        count += len(chunk)
    tensors = {}
    for l in layers:
        mom2 = acc[l] / count
        tensors[f"{module_path(model, l)}.mom2"] = mom2.astype(np.float16)
        print(f"layer {l}: d_k={mom2.shape[0]} trace={np.trace(mom2):.3f} max eig={np.linalg.eigvalsh(mom2)[-1]:.3f}")
    meta = {
        "tokens": str(count),
        "corpus": "tools/.cache/corpus/train.txt (tools/corpus.py)",
        "layers": json.dumps([module_path(model, l) for l in layers]),
        "note": "mom2 = E[k k^T] of the module's input over corpus tokens (float64 sum, stored F16)",
    }
    record_defaults(meta, args)
    out = args.out or os.path.join(ROOT, "models", args.model, "edit_stats.safetensors")
    save_file(tensors, out, metadata=meta)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {count} tokens)")


if __name__ == "__main__":
    main()
