#!/usr/bin/env python3
"""Fixtures for named merges (Task Arithmetic, MWA, rank truncation), built with real PEFT + transformers Trainer.

1. One LoRA run (GPT-2 tiny, r=4 on c_attn, fan_in_fan_out) trained with `transformers.Trainer` on the comedies,
   saving 5 Trainer checkpoints (`checkpoint-N/`: PEFT adapter + trainer_state.json with eval loss at each save).
   Committed: test/fixtures/merges/run/checkpoint-N/{adapter_config.json, adapter_model.safetensors,
   trainer_state.json} (optimizer/scheduler/rng files are not saved or are deleted: Patchbay never reads them).
2. test/fixtures/merges/references.json: float32 PyTorch logits (rounded to 6 decimals) of
   - `mwa`: MWA by eval loss, p = 1, over the 5 checkpoints: base + Σ w_i·ΔW_i (ΔW_i = s·B_i·A_i, float64 sum),
     checked against PEFT's own exact concatenation (`add_weighted_adapter(combination_type="cat")`);
   - `truncated`: Task Arithmetic 1.0·checkpoint-100 + 0.5·lora-comedy, re-factored per module to rank 6 by a
     float64 truncated SVD (torch.linalg.svd): base + U_r·S_r·V_rᵀ, with the relative Frobenius error per module
     and overall.
3. test/fixtures/merges/svd-cases.json: random factor pairs a [d_in, R], b [R, d_out] and NumPy's truncated SVD of
   M = a·b (singular values, rank-r reconstruction, relative error), including R > min(d_in, d_out) (dense path).
4. tools/.cache/merges/table.md: held-out loss (comedy blocks never trained on nor used for eval) of every
   checkpoint, the last, the uniform average, MWA by loss and by step at p ∈ {0.5, 1, 2}, and Task Arithmetic of
   two different adapters (checkpoint-100 and lora-tragedy) at several λ, one negative.

Usage: python tools/merges/build_merge_fixtures.py [--reuse-run]
  (needs /work/hf-cache/tiny-gpt2-hf or tools/.cache/tiny-gpt2-hf; --reuse-run keeps the committed checkpoints
  and recomputes references and the table only)
CPU, 2 threads, nice'd: about 3-6 minutes.
"""
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "adapters"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from train_adapters import genre_ids, lora_delta, load_base, r6  # noqa: E402

GPT2 = next(p for p in (os.path.join(ROOT, "tools", ".cache", "tiny-gpt2-hf"), "/work/hf-cache/tiny-gpt2-hf")
            if os.path.exists(os.path.join(p, "model.safetensors")))
OUT = os.path.join(ROOT, "test", "fixtures", "merges")
RUN = os.path.join(OUT, "run")
SCRATCH = os.path.join(ROOT, "tools", ".cache", "merges")
PROMPTS = ["ROMEO.\nBut soft,", "FIRST WITCH.\nWhen shall we"]
SEQ, TEST_BLOCKS, VAL_BLOCKS = 64, 64, 16
STEPS, SAVE_EVERY = 100, 20
KEEP = ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json")


class Blocks(torch.utils.data.Dataset):
    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def split_blocks(ids):
    n = len(ids) // SEQ
    blocks = [ids[i * SEQ:(i + 1) * SEQ].clone() for i in range(n)]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    blocks = [blocks[i] for i in order]
    return blocks[:TEST_BLOCKS], blocks[TEST_BLOCKS:TEST_BLOCKS + VAL_BLOCKS], blocks[TEST_BLOCKS + VAL_BLOCKS:]


def train_run(tok_ids):
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments
    test, val, train = split_blocks(tok_ids)
    model = get_peft_model(load_base(GPT2), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                                       lora_dropout=0.0, bias="none"))
    tmp = os.path.join(SCRATCH, "trainer")
    shutil.rmtree(tmp, ignore_errors=True)
    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=8, per_device_eval_batch_size=8, learning_rate=3e-3,
                             max_steps=STEPS, save_steps=SAVE_EVERY, eval_strategy="steps", eval_steps=SAVE_EVERY,
                             logging_steps=10, save_only_model=True, report_to=[], seed=7, use_cpu=True,
                             dataloader_num_workers=0, lr_scheduler_type="constant", weight_decay=0.0)
    Trainer(model=model, args=args, train_dataset=Blocks(train), eval_dataset=Blocks(val)).train()
    shutil.rmtree(RUN, ignore_errors=True)
    os.makedirs(RUN)
    for step in range(SAVE_EVERY, STEPS + 1, SAVE_EVERY):
        src, dst = os.path.join(tmp, f"checkpoint-{step}"), os.path.join(RUN, f"checkpoint-{step}")
        os.makedirs(dst)
        for f in KEEP:
            shutil.copy(os.path.join(src, f), os.path.join(dst, f))
        cfg_path = os.path.join(dst, "adapter_config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["base_model_name_or_path"] = "tiny-gpt2"
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
    return test


def checkpoint_metrics(step):
    """What Patchbay reads: global_step, and the eval loss logged at that step (else the training loss)."""
    with open(os.path.join(RUN, f"checkpoint-{step}", "trainer_state.json")) as f:
        state = json.load(f)
    gs = state["global_step"]
    at = [h for h in state["log_history"] if h.get("step") == gs]
    evals = [h["eval_loss"] for h in at if "eval_loss" in h]
    train = [h["loss"] for h in at if "loss" in h]
    return gs, (evals or train)[-1]


def mwa_weights(values, p, metric):
    raw = [(1.0 / v) ** p if metric == "loss" else v ** p for v in values]
    return [w / sum(raw) for w in raw]


def merged_model(parts, conv1d=True):
    model = load_base(GPT2)
    params = dict(model.named_parameters())
    total = {}
    for w, delta in parts:
        for m, d in delta.items():
            total[m] = total.get(m, 0) + w * d
    with torch.no_grad():
        for m, d in total.items():
            W = params[m + ".weight"]
            W.data = (W.data.double() + (d.T if conv1d else d)).float()
    return model


@torch.no_grad()
def heldout_loss(model, blocks):
    losses = [model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks]
    return sum(losses) / len(losses)


@torch.no_grad()
def logits_ref(model, tok):
    out = []
    for i, text in enumerate(PROMPTS):
        ids = tok.encode(text).ids
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        entry = dict(text=text, input_ids=ids, last_logits=r6(logits[-1]))
        if i == 0:
            entry["all_position_logits"] = [r6(row) for row in logits]
        out.append(entry)
    return out


def truncate(delta, rank):
    """Per module: best rank-r approximation (Eckart–Young) of ΔW [d_out, d_in], and its relative error."""
    out, errs, num, den = {}, {}, 0.0, 0.0
    for m, d in delta.items():
        U, S, Vh = torch.linalg.svd(d, full_matrices=False)
        out[m] = (U[:, :rank] * S[:rank]) @ Vh[:rank]
        tail, total = float((S[rank:] ** 2).sum()), float((S ** 2).sum())
        errs[m] = math.sqrt(tail / total) if total > 0 else 0.0
        num, den = num + tail, den + total
    return out, errs, math.sqrt(num / den)


def svd_cases():
    rng = np.random.default_rng(17)
    cases = []
    for d_in, d_out, R, r in [(40, 30, 6, 3), (24, 56, 12, 5), (16, 12, 20, 4), (33, 9, 9, 9), (64, 48, 10, 1)]:
        decay = 0.7 ** np.arange(R)
        a = (rng.standard_normal((d_in, R)) * decay).astype(np.float32)
        b = rng.standard_normal((R, d_out)).astype(np.float32)
        M = a.astype(np.float64) @ b.astype(np.float64)
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        Mr = (U[:, :r] * S[:r]) @ Vt[:r]
        err = math.sqrt(float((S[r:] ** 2).sum()) / float((S ** 2).sum()))
        cases.append(dict(d_in=d_in, d_out=d_out, R=R, rank=r, a=a.ravel().tolist(), b=b.ravel().tolist(),
                          singular_values=S.tolist(), truncated=Mr.ravel().tolist(), rel_error=err))
    return dict(source="numpy.linalg.svd (float64) of M = a·b, a [d_in, R], b [R, d_out] row-major", cases=cases)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(GPT2, "tokenizer.json"))
    os.makedirs(SCRATCH, exist_ok=True)
    t0 = time.time()
    comedies = genre_ids(tok, "comedies")
    if "--reuse-run" in sys.argv and os.path.exists(os.path.join(RUN, f"checkpoint-{STEPS}", "trainer_state.json")):
        test = split_blocks(comedies)[0]  # the same deterministic split the run was trained with
        print("reusing the committed Trainer run", flush=True)
    else:
        test = train_run(comedies)
        print(f"trained in {time.time() - t0:.0f}s", flush=True)

    steps = list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    ckpt = {s: os.path.join(RUN, f"checkpoint-{s}") for s in steps}
    deltas = {s: lora_delta(ckpt[s]) for s in steps}
    metrics = {s: checkpoint_metrics(s) for s in steps}
    last = deltas[steps[-1]]
    # Reference 1: MWA by eval loss, p = 1, exact (merged ΔW), checked against PEFT's exact `cat` combination.
    from peft import PeftModel
    w = mwa_weights([metrics[s][1] for s in steps], 1, "loss")
    mwa = merged_model(list(zip(w, [deltas[s] for s in steps])))
    peft = PeftModel.from_pretrained(load_base(GPT2), ckpt[steps[0]], adapter_name="c0")
    for i, s in enumerate(steps[1:], 1):
        peft.load_adapter(ckpt[s], adapter_name=f"c{i}")
    peft.add_weighted_adapter([f"c{i}" for i in range(len(steps))], w, "mwa", combination_type="cat")
    peft.set_adapter("mwa")
    peft.eval()
    with torch.no_grad():
        ids = torch.tensor([tok.encode(PROMPTS[0]).ids])
        diff = (peft(input_ids=ids).logits - mwa(input_ids=ids).logits).abs().max().item()
    print(f"MWA merged ΔW vs PEFT add_weighted_adapter(cat): max |Δlogit| = {diff:.2e}")
    assert diff < 5e-5, diff

    # Reference 2: Task Arithmetic 1.0·checkpoint-100 + 0.5·lora-comedy, truncated to rank 6 per module.
    comedy = lora_delta(os.path.join(ROOT, "adapters", "lora-comedy"))
    ta = {m: last[m] + 0.5 * comedy[m] for m in last}
    trunc, errs, overall = truncate(ta, 6)
    truncated = merged_model([(1.0, trunc)])

    refs = dict(
        tolerance=1e-4,
        base="tiny-gpt2",
        prompts=PROMPTS,
        checkpoints=[dict(path=f"run/checkpoint-{s}", step=metrics[s][0], loss=metrics[s][1]) for s in steps],
        mwa=dict(method="mwa", metric="loss", penalty=1, weights=w, peft_cat_max_abs_diff=diff,
                 source="base + Σ w_i·s_i·B_i·A_i (float64), = PEFT add_weighted_adapter(cat)", logits=logits_ref(mwa, tok)),
        truncated=dict(method="task_arithmetic", sources=[dict(id="checkpoint-100", weight=1.0), dict(id="lora-comedy", weight=0.5)],
                       rank=6, rel_errors=errs, overall_rel_error=overall,
                       source="base + U_r·S_r·V_rᵀ of the exact merged ΔW per module (torch.linalg.svd, float64)",
                       logits=logits_ref(truncated, tok)),
    )
    with open(os.path.join(OUT, "references.json"), "w") as f:
        json.dump(refs, f, separators=(",", ":"))
    with open(os.path.join(OUT, "svd-cases.json"), "w") as f:
        json.dump(svd_cases(), f, separators=(",", ":"))

    print("references written; computing the held-out table", flush=True)
    base = load_base(GPT2)
    rows = [("base model", heldout_loss(base, test))]
    for s in steps:
        rows.append((f"checkpoint-{s} (eval loss {metrics[s][1]:.4f})", heldout_loss(merged_model([(1.0, deltas[s])]), test)))
    rows.append(("last checkpoint", rows[-1][1]))
    rows.append(("uniform average (p = 0)", heldout_loss(merged_model([(1 / len(steps), deltas[s]) for s in steps]), test)))
    for metric in ("loss", "steps"):
        values = [metrics[s][1] if metric == "loss" else metrics[s][0] for s in steps]
        for p in (0.5, 1, 2):
            w = mwa_weights(values, p, metric)
            rows.append((f"MWA by {metric}, p = {p} (w = {', '.join(f'{x:.3f}' for x in w)})",
                         heldout_loss(merged_model(list(zip(w, [deltas[s] for s in steps]))), test)))
    tragedy = lora_delta(os.path.join(ROOT, "adapters", "lora-tragedy"))
    tragedy_blocks = split_blocks(genre_ids(tok, "tragedies"))[0]
    ta_rows = []
    for lc, lt in [(1, 0), (0, 1), (0.5, 0.5), (1, 1), (1, -0.5), (1, -1)]:
        m = merged_model([(lc, last), (lt, tragedy)])
        ta_rows.append((lc, lt, heldout_loss(m, test), heldout_loss(m, tragedy_blocks)))

    lines = ["| merge | held-out loss (comedies) |", "|---|---|"]
    lines += [f"| {name} | {loss:.4f} |" for name, loss in rows]
    lines += ["", "| Task Arithmetic λ·checkpoint-100 + μ·lora-tragedy | held-out comedies | tragedy blocks |", "|---|---|---|"]
    lines += [f"| λ = {lc}, μ = {lt} | {a:.4f} | {b:.4f} |" for lc, lt, a, b in ta_rows]
    table = "\n".join(lines)
    with open(os.path.join(SCRATCH, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
