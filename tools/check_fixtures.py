#!/usr/bin/env python3
"""Replay test/fixtures/<model>/reference.json against models/<model>/onnx/model.onnx with onnxruntime,
the way Patchbay's runtime drives it (prompt with empty past, then one token per step with the KV cache).
Exits non-zero if any logits differ by more than the fixture's tolerance or a greedy token differs."""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    bad = 0
    for name in sys.argv[1:] or ["tiny-gpt2", "tiny-llama"]:
        ref = json.load(open(os.path.join(ROOT, "test", "fixtures", name, "reference.json")))
        man = json.load(open(os.path.join(ROOT, "models", name, "onnx_manifest.json")))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(os.path.join(ROOT, "models", name, "onnx", "model.onnx"), so,
                                    providers=["CPUExecutionProvider"])
        L, KV, HD = man["num_layers"], man["num_kv_heads"], man["head_dim"]
        tol = ref["tolerance"]
        worst = 0.0

        def run(ids, start, past):
            n = len(ids)
            feeds = {"input_ids": np.array([ids], np.int64),
                     "attention_mask": np.ones((1, start + n), np.int64),
                     "position_ids": np.arange(start, start + n, dtype=np.int64)[None]}
            for i in range(L):
                feeds[f"past_key_values.{i}.key"] = past[2 * i]
                feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
            out = sess.run(None, feeds)
            return out[0][0], out[1:]

        for pi, p in enumerate(ref["prompts"]):
            past = [np.zeros((1, KV, 0, HD), np.float32)] * (2 * L)
            logits, past = run(p["input_ids"], 0, past)
            if pi == ref["all_position_logits"]["prompt_index"]:
                worst = max(worst, float(np.abs(logits - np.array(ref["all_position_logits"]["logits"])).max()))
            worst = max(worst, float(np.abs(logits[-1] - np.array(p["last_logits"])).max()))
            prev = logits[-1]
            pos = len(p["input_ids"])
            gen = []
            for step in range(p["greedy"]["max_new_tokens"]):
                t = int(prev.argmax())
                gen.append(t)
                if t == 0:
                    break
                lg, past = run([t], pos, past)
                pos += 1
                if step < len(p["decode_steps"]):
                    s = p["decode_steps"][step]
                    if s["token"] != t:
                        print(f"  {name} prompt {pi} step {step}: token {t} != {s['token']}")
                        bad += 1
                    worst = max(worst, float(np.abs(lg[-1] - np.array(s["logits"])).max()))
                prev = lg[-1]
            if gen != p["greedy"]["new_token_ids"]:
                print(f"  {name} prompt {pi}: greedy {gen} != {p['greedy']['new_token_ids']}")
                bad += 1
        ok = worst <= tol
        bad += 0 if ok else 1
        print(f"{name}: max |ORT - HF reference| = {worst:.2e} (tolerance {tol:g}) {'ok' if ok else 'FAIL'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
