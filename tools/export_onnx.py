#!/usr/bin/env python3
"""Export tiny-gpt2 and tiny-llama to ONNX in the layout Patchbay's TypeScript runtime relies on.

Inputs : tools/.cache/tiny-gpt2-hf/, tools/.cache/tiny-llama-hf/   (train_gpt2.py, build_llama.py)
Outputs: models/<name>/onnx/model.onnx, config.json, tokenizer.json, tokenizer_config.json,
         generation_config.json, onnx_manifest.json (MatMul node -> initializer table, I/O names)

Graph contract (checked below, the script fails if any check fails):
  inputs  input_ids int64 [batch, seq], attention_mask int64 [batch, past+seq], position_ids int64 [batch, seq],
          past_key_values.{i}.key / .value float32 [batch, kv_heads, past, head_dim]
  outputs logits float32 [batch, seq, vocab], present.{i}.key / .value float32 [batch, kv_heads, past+seq, head_dim]
  * query j of the new segment sees key k iff k <= past + j and attention_mask[b, k] == 1; masked scores are
    replaced by finfo(float32).min (never -inf), so fully masked rows are finite.
  * position_ids are used exactly as given.
  * every linear layer is MatMul(x, W) with W a 2-D float32 initializer [d_in, d_out] (+ Add(bias) for GPT-2),
    node named after the HF module path, e.g. /transformer/h.0/attn/c_attn/MatMul, /model/layers.0/mlp/down_proj/MatMul.
  * GPT-2 ties lm_head and wte: the single initializer `lm_head.weight` has shape [n_embd, vocab] (= wte^T);
    the token embedding is Gather(lm_head.weight, input_ids, axis=1) followed by a Transpose, the lm_head is
    /lm_head/MatMul. Llama's weights are stored pre-transposed under their HF names (shape [d_in, d_out]).

The forward pass is a small PyTorch re-implementation with module names identical to HF's; it is checked
against the HF transformers model (< 1e-5) and the exported file against onnxruntime.
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn as nn

from decoder_modules import GPT2Export, Lin, LlamaExport

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache")


# ------------------------------------------------------------------------------------------------ helpers
def geometry(cfg):
    if cfg.model_type == "gpt2":
        return cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.vocab_size
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.num_key_value_heads, hd, cfg.vocab_size


def empty_past(cfg, b, p=0, gen=None):
    L, kv, hd, _ = geometry(cfg)
    out = []
    for _ in range(2 * L):
        out.append(torch.randn(b, kv, p, hd, generator=gen) if p else torch.zeros(b, kv, 0, hd))
    return out


def hf_past_to_flat(pkv):
    flat = []
    if hasattr(pkv, "layers"):
        for layer in pkv.layers:
            flat += [layer.keys, layer.values]
    else:
        for k, v in pkv:
            flat += [k, v]
    return flat


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def check(cond, msg):
    if not cond:
        raise SystemExit("CHECK FAILED: " + msg)
    print("  ok:", msg)


def parity(cfg, hf, mod, dt):
    """Max abs differences re-impl vs HF: prompt logits, KV cache, cached step, left padding."""
    L, KV, HD, V = geometry(cfg)
    g = torch.Generator().manual_seed(123)
    out = {}
    with torch.no_grad():
        ids = torch.randint(1, V, (2, 9), generator=g)
        pos = torch.arange(9)[None].expand(2, 9)
        mask = torch.ones(2, 9, dtype=torch.int64)
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        mine = mod(ids, mask, pos, *[t.to(dt) for t in empty_past(cfg, 2)])
        out["prompt"] = maxdiff(ref.logits, mine[0])
        out["cache"] = max(maxdiff(a, b) for a, b in zip(hf_past_to_flat(ref.past_key_values), mine[1:]))
        nxt = torch.randint(1, V, (2, 3), generator=g)
        mask2 = torch.ones(2, 12, dtype=torch.int64)
        pos2 = torch.arange(9, 12)[None].expand(2, 3)
        ref2 = hf(input_ids=nxt, attention_mask=mask2, position_ids=pos2, past_key_values=ref.past_key_values,
                  use_cache=True)
        out["step"] = maxdiff(ref2.logits, mod(nxt, mask2, pos2, *mine[1:])[0])
        maskp = mask.clone()
        maskp[1, :3] = 0
        posp = pos.clone()
        posp[1] = torch.clamp(torch.arange(9) - 3, min=0)
        refp = hf(input_ids=ids, attention_mask=maskp, position_ids=posp).logits
        minep = mod(ids, maskp, posp, *[t.to(dt) for t in empty_past(cfg, 2)])[0]
        if torch.isnan(refp).any():  # HF's own eager float64 Llama path yields NaN with padding; skip it there
            print(f"  note: HF {dt} produced NaN with left padding; left-pad parity checked in float32 only")
        else:
            out["left_pad"] = maxdiff(refp[:, 3:], minep[:, 3:])
    return out


def export_one(name, hf_dir, out_dir):
    from transformers import AutoConfig, AutoModelForCausalLM
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    print(f"== {name}")
    cfg = AutoConfig.from_pretrained(hf_dir)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
    sd = hf.state_dict()
    mod = (GPT2Export(cfg) if cfg.model_type == "gpt2" else LlamaExport(cfg)).load_hf(sd).eval()
    L, KV, HD, V = geometry(cfg)
    g = torch.Generator().manual_seed(0)

    # ---- 1. re-implementation vs HF: float64 proves the math is identical (1e-9), float32 is the real thing
    #      (float32 differences ~1e-5 on logits of magnitude ~20 come from BLAS summation order, e.g. addmm).
    import copy
    for dt, tol in ((torch.float64, 1e-9), (torch.float32, 5e-5)):
        hf_d = copy.deepcopy(hf).to(dt)
        mod_d = copy.deepcopy(mod).to(dt)
        d = parity(cfg, hf_d, mod_d, dt)
        check(max(d.values()) < tol, f"re-impl == HF in {dt} (tol {tol:g}): " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
    with torch.no_grad():
        ids = torch.randint(1, V, (2, 9), generator=g)
        pos = torch.arange(9)[None].expand(2, 9)
        mask = torch.ones(2, 9, dtype=torch.int64)
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        mine = mod(ids, mask, pos, *empty_past(cfg, 2))
        flat = hf_past_to_flat(ref.past_key_values)
        nxt = torch.randint(1, V, (2, 3), generator=g)
        mask2 = torch.ones(2, 12, dtype=torch.int64)
        pos2 = torch.arange(9, 12)[None].expand(2, 3)
        ref2 = hf(input_ids=nxt, attention_mask=mask2, position_ids=pos2, past_key_values=ref.past_key_values,
                  use_cache=True)

    # ---- 2. export
    os.makedirs(os.path.join(out_dir, "onnx"), exist_ok=True)
    path = os.path.join(out_dir, "onnx", "model.onnx")
    past_names, present_names = [], []
    for i in range(L):
        past_names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        present_names += [f"present.{i}.key", f"present.{i}.value"]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for n in past_names:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in present_names:
        dyn[n] = {0: "batch_size", 2: "total_sequence_length"}
    ex_ids = torch.randint(1, V, (2, 3), generator=g)
    ex_past = empty_past(cfg, 2, 4, g)
    ex_mask = torch.ones(2, 7, dtype=torch.int64)
    ex_pos = torch.arange(4, 7)[None].expand(2, 3).contiguous()
    with torch.no_grad():
        torch.onnx.export(mod, (ex_ids, ex_mask, ex_pos, *ex_past), path, dynamo=False, opset_version=17,
                          do_constant_folding=True,
                          input_names=["input_ids", "attention_mask", "position_ids"] + past_names,
                          output_names=["logits"] + present_names, dynamic_axes=dyn)
    m = onnx.load(path)
    onnx.checker.check_model(m)

    # ---- 3. graph contract
    inits = {t.name: t for t in m.graph.initializer}
    matmuls = []
    used_by = {}
    for node in m.graph.node:
        for inp in node.input:
            if inp in inits:
                used_by.setdefault(inp, []).append((node.op_type, node.name))
    own_sd = mod.state_dict()
    expected = [k[:-len(".weight")] for k, v in own_sd.items()
                if k.endswith(".weight") and isinstance(dict(mod.named_modules())[k[:-len(".weight")]], Lin)]
    for node in m.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            t = inits[node.input[1]]
            matmuls.append(dict(node=node.name, weight=t.name, shape=list(t.dims)))
    check(len(matmuls) == len(expected), f"{len(matmuls)} weight MatMuls == {len(expected)} linear layers")
    by_node = {mm["node"]: mm for mm in matmuls}
    ordered = []
    for mpath in expected:
        want_node = "/" + mpath.replace(".", "/").replace("/h/", "/h.").replace("/layers/", "/layers.") + "/MatMul"
        check(want_node in by_node, f"node {want_node} present")
        mm = by_node[want_node]
        ordered.append(mm)
        w = numpy_helper.to_array(inits[mm["weight"]])
        ok = (w.ndim == 2 and inits[mm["weight"]].data_type == onnx.TensorProto.FLOAT
              and np.array_equal(w, own_sd[mpath + ".weight"].numpy()))
        check(ok, f"{mm['node']} <- {mm['weight']} {mm['shape']}")
        users = [u for u in used_by[mm["weight"]] if u[0] == "MatMul"]
        check(len(users) == 1, f"{mm['weight']} feeds exactly one MatMul")
    other_matmul_w = [n.name for n in m.graph.node if n.op_type in ("Gemm", "Conv")]
    check(not other_matmul_w, "no Gemm/Conv nodes")
    in_names = [i.name for i in m.graph.input]
    out_names = [o.name for o in m.graph.output]
    check(in_names == ["input_ids", "attention_mask", "position_ids"] + past_names, f"inputs {in_names}")
    check(out_names == ["logits"] + present_names, f"outputs {out_names}")

    # ---- 4. onnxruntime vs re-implementation
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(ids_, mask_, pos_, past_):
        feeds = {"input_ids": ids_.numpy(), "attention_mask": mask_.numpy(), "position_ids": pos_.numpy()}
        for n, t in zip(past_names, past_):
            feeds[n] = t.numpy()
        return sess.run(None, feeds)

    with torch.no_grad():
        # (a) prompt, empty past
        o = run(ids, mask, pos, empty_past(cfg, 2))
        check(maxdiff(o[0], ref.logits) < 1e-4 and maxdiff(o[0], mine[0]) < 5e-5,
              f"ORT prompt == HF (max {maxdiff(o[0], ref.logits):.2e}), == re-impl (max {maxdiff(o[0], mine[0]):.2e})")
        check(all(maxdiff(a, b) < 1e-4 for a, b in zip(o[1:], flat)), "ORT present == HF cache, shapes "
              + str(list(o[1].shape)))
        # (b) with past
        o2 = run(nxt, mask2, pos2, [torch.from_numpy(t) for t in o[1:]])
        check(maxdiff(o2[0], ref2.logits) < 1e-4, f"ORT with past == HF cache step (max {maxdiff(o2[0], ref2.logits):.2e})")
        check(list(o2[1].shape) == [2, KV, 12, HD], f"present shape {list(o2[1].shape)}")
        # (c) padding anywhere: row 1 = row 0's tokens, left-padded by 2 in the past and with a pad slot in the
        # new segment; valid positions must match an unpadded run of row 0.
        base_ids = torch.randint(1, V, (1, 8), generator=g)
        r_full = run(base_ids, torch.ones(1, 8, dtype=torch.int64), torch.arange(8)[None], empty_past(cfg, 1))
        # unpadded, in two chunks (5 past + 3 new)
        r_a = run(base_ids[:, :5], torch.ones(1, 5, dtype=torch.int64), torch.arange(5)[None], empty_past(cfg, 1))
        r_b = run(base_ids[:, 5:], torch.ones(1, 8, dtype=torch.int64), torch.arange(5, 8)[None],
                  [torch.from_numpy(t) for t in r_a[1:]])
        check(maxdiff(r_b[0], r_full[0][:, 5:]) < 5e-5, f"chunked (past) == full run (max {maxdiff(r_b[0], r_full[0][:, 5:]):.2e})")
        # padded: past = [pad, pad, t0..t4] (7), new = [t5, pad, t6, t7]
        pid = torch.cat([torch.zeros(1, 2, dtype=torch.int64), base_ids[:, :5]], 1)
        pm = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
        pp = torch.tensor([[0, 0, 0, 1, 2, 3, 4]])
        ra = run(pid, pm, pp, empty_past(cfg, 1))
        check(all(np.isfinite(t).all() for t in ra), "fully masked padding rows are finite (no NaN/inf)")
        nid = torch.tensor([[int(base_ids[0, 5]), 0, int(base_ids[0, 6]), int(base_ids[0, 7])]])
        nm = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1]])
        npos = torch.tensor([[5, 0, 6, 7]])
        rb = run(nid, nm, npos, [torch.from_numpy(t) for t in ra[1:]])
        check(all(np.isfinite(t).all() for t in rb), "padded step outputs finite")
        d = max(maxdiff(ra[0][:, 2:], r_full[0][:, :5]), maxdiff(rb[0][:, [0, 2, 3]], r_full[0][:, 5:]))
        check(d < 1e-4, f"padding anywhere (past + new segment) == unpadded run (max {d:.2e})")
        # (d) batch of 2 with different padding in one call equals separate runs
        bid = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.int64), base_ids[:, :5]], 1), base_ids], 0)
        bm = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
        bp = torch.tensor([[0, 0, 0, 0, 1, 2, 3, 4], list(range(8))])
        rbb = run(bid, bm, bp, empty_past(cfg, 2))
        d = max(maxdiff(rbb[0][0, 3:], r_full[0][0, :5]), maxdiff(rbb[0][1], r_full[0][0]))
        check(d < 1e-4, f"batched left padding == separate runs (max {d:.2e})")

    # ---- 5. companion files
    for n in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(hf_dir, n), os.path.join(out_dir, n))
    with open(os.path.join(hf_dir, "config.json")) as f:
        cj = json.load(f)
    if cfg.model_type == "llama" and "rope_theta" not in cj:  # transformers 5 nests it in rope_parameters;
        cj["rope_theta"] = cj.get("rope_parameters", {}).get("rope_theta", 10000.0)  # keep the classic key too
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cj, f, indent=2, sort_keys=True)
    manifest = dict(
        model=name, model_type=cfg.model_type, opset=17, num_layers=L, num_kv_heads=KV, head_dim=HD, vocab_size=V,
        inputs=[dict(name=i.name, elem_type=onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type),
                     shape=[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]) for i in m.graph.input],
        outputs=[dict(name=o.name, elem_type=onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type),
                      shape=[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in m.graph.output],
        matmuls=[dict(node=mm["node"], initializer=mm["weight"], shape=mm["shape"],
                      hf_module=mpath, hf_weight_layout=("[d_in, d_out] (Conv1D, same as HF)" if cfg.model_type == "gpt2"
                                                         and mpath != "lm_head" else "transposed HF nn.Linear weight"))
                 for mm, mpath in zip(ordered, expected)],
        notes=("GPT-2: lm_head.weight = transformer.wte.weight^T, shared by the token-embedding Gather(axis=1) "
               "and /lm_head/MatMul" if cfg.model_type == "gpt2" else "Llama: no tied weights; RoPE from position_ids"),
        onnx_bytes=os.path.getsize(path),
    )
    with open(os.path.join(out_dir, "onnx_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"  wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    return manifest


def main():
    torch.set_num_threads(2)
    names = sys.argv[1:] or ["tiny-gpt2", "tiny-llama"]
    for n in names:
        hf_dir = os.environ.get(f"HF_DIR_{n.replace('-', '_').upper()}", os.path.join(CACHE, n + "-hf"))
        export_one(n, hf_dir, os.path.join(ROOT, "models", n))


if __name__ == "__main__":
    main()
