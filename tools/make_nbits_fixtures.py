#!/usr/bin/env python3
"""Reference fixtures for the GGUF → MatMulNBits packing (src/import/quant/nbits-pack.ts).

For each GGUF block type Patchbay maps onto MatMulNBits, one small tensor [N=4 rows, K=256] as raw GGUF block
bytes plus its dequantization by the `gguf` Python package (gguf.quants.dequantize, the reference
implementation that mirrors ggml-quants.c). Q4_0/Q4_1/Q8_0/Q5_0/Q5_1 blocks come from gguf.quants.quantize
of seeded random weights; gguf-py cannot quantize K-quants, so Q4_K/Q6_K blocks are seeded random bytes with
their f16 scale fields set to ordinary values (every other bit pattern is a valid block).

Output (committed, ~40 KB): test/fixtures/nbits/blocks.json
  {type: {K, N, raw: base64 bytes, dequant: base64 float32 [N, K] little-endian}}

Usage: python tools/make_nbits_fixtures.py
"""
import base64
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "nbits", "blocks.json")
K, N = 256, 4


def random_kquant(rng, t):
    block, size = quants.GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(N, K // block, size), dtype=np.uint8)
    f16 = lambda v: np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)  # noqa: E731
    for n in range(N):
        for b in range(K // block):
            if t == T.Q4_K:  # d at 0, dmin at 2
                raw[n, b, 0:2] = f16(rng.uniform(0.001, 0.02))
                raw[n, b, 2:4] = f16(rng.uniform(0.001, 0.02))
            elif t == T.Q6_K:  # d at 208
                raw[n, b, 208:210] = f16(rng.uniform(0.0005, 0.005))
    return raw.reshape(N, -1)


def main():
    rng = np.random.default_rng(7)
    out = {}
    for t in [T.Q4_0, T.Q4_1, T.Q8_0, T.Q5_0, T.Q5_1, T.Q4_K, T.Q6_K]:
        if t in (T.Q4_K, T.Q6_K):
            raw = random_kquant(rng, t)
        else:
            w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
            w[1] += 0.03  # a row with a non-zero mean exercises the Q4_1/Q5_1 min
            raw = quants.quantize(w, t)
        deq = quants.dequantize(raw, t).astype("<f4")
        assert deq.shape == (N, K), deq.shape
        out[t.name] = {
            "K": K,
            "N": N,
            "raw": base64.b64encode(np.ascontiguousarray(raw).tobytes()).decode(),
            "dequant": base64.b64encode(deq.tobytes()).decode(),
        }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
