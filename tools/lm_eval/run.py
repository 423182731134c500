"""lm-evaluation-harness against Patchbay and against PyTorch on the same weights.

  /work/pyenv/bin/python tools/lm_eval/run.py            (about 3 minutes on 2 cores)

1. Builds the tasks from models/facts.jsonl (make_tasks.py).
2. Starts Patchbay (`node --import tsx src/main.ts`, 127.0.0.1, a free port, adapters from adapters/).
3. facts_mc (multiple choice, loglikelihood) with lm-eval's `local-completions` against Patchbay (echo +
   logprobs requests, several prompts per request) and with its `hf` backend on the same weights in PyTorch
   (tiny-gpt2-hf; PEFT for the adapter), for the base and for the adapter lora-comedy. Checks: accuracies equal,
   every per-choice loglikelihood within 1e-3.
4. facts_gen (generate_until) through `local-chat-completions` (chat template applied by Patchbay) and through
   `hf` with lm-eval's chat template; reports exact match of both; check: every generation identical.
Writes tools/lm_eval/results.json. Exit status 1 if a check fails.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch
import lm_eval
from lm_eval.tasks import TaskManager

ROOT = Path(__file__).resolve().parents[2]
HF_BASE = os.environ.get("PATCHBAY_HF_GPT2", "/work/hf-cache/tiny-gpt2-hf")
ADAPTER = "lora-comedy"
TOL = 1e-3
torch.set_num_threads(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_patchbay() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "PATCHBAY_LOG_LEVEL": "warn", "PATCHBAY_THREADS": "1"}
    proc = subprocess.Popen(["node", "--import", "tsx", "src/main.ts"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"{url}/readyz").status == 200:
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("Patchbay did not become ready")


def evaluate(model: str, model_args: str, task: str, tm: TaskManager, chat: bool = False) -> dict:
    out = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=[task], task_manager=tm, log_samples=True,
        batch_size=1 if chat and model != "hf" else 8, device="cpu", apply_chat_template=chat, random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0,
    )
    return out


def per_choice(out: dict, task: str) -> dict[int, list[float]]:
    return {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in out["samples"][task]}


def main() -> int:
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_tasks.py"))], check=True)
    tm = TaskManager(include_path=str(ROOT / "tools" / ".cache" / "lm_eval" / "tasks"))
    proc, url = start_patchbay()
    results: dict = {"tolerance": TOL, "hf_checkpoint": HF_BASE, "lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13", "mc": {}, "gen": {}}
    ok = True
    try:
        api = (f"base_url={url}/v1/completions,tokenizer_backend=huggingface,tokenizer={HF_BASE},"
               "tokenized_requests=True,max_length=256,max_retries=1")
        for name, served, peft in [("base", "tiny-gpt2", None), (ADAPTER, ADAPTER, ROOT / "adapters" / ADAPTER)]:
            pb = evaluate("local-completions", f"model={served},{api}", "facts_mc", tm)
            hf = evaluate("hf", f"pretrained={HF_BASE},dtype=float32" + (f",peft={peft}" if peft else ""), "facts_mc", tm)
            a, b = per_choice(pb, "facts_mc"), per_choice(hf, "facts_mc")
            diffs = [abs(x - y) for d in b for x, y in zip(a[d], b[d], strict=True)]
            acc_pb, acc_hf = pb["results"]["facts_mc"]["acc,none"], hf["results"]["facts_mc"]["acc,none"]
            entry = {
                "items": len(b), "choices_scored": len(diffs), "acc_patchbay": acc_pb, "acc_hf": acc_hf,
                "max_abs_loglikelihood_diff": max(diffs), "mean_abs_loglikelihood_diff": sum(diffs) / len(diffs),
                "accuracies_equal": acc_pb == acc_hf, "within_tolerance": max(diffs) <= TOL,
            }
            results["mc"][name] = entry
            ok &= entry["accuracies_equal"] and entry["within_tolerance"]
            print(name, json.dumps(entry), flush=True)
        chat_api = f"model=tiny-gpt2,base_url={url}/v1/chat/completions,max_retries=1,num_concurrent=1"
        pb = evaluate("local-chat-completions", chat_api, "facts_gen", tm, chat=True)
        hf = evaluate("hf", f"pretrained={HF_BASE},dtype=float32", "facts_gen", tm, chat=True)
        gen_pb = {s["doc_id"]: s["resps"][0][0] for s in pb["samples"]["facts_gen"]}
        gen_hf = {s["doc_id"]: s["resps"][0][0] for s in hf["samples"]["facts_gen"]}
        same = sum(gen_pb[d] == gen_hf[d] for d in gen_hf)
        results["gen"] = {
            "items": len(gen_hf), "exact_match_patchbay": pb["results"]["facts_gen"]["exact_match,strip"],
            "exact_match_hf": hf["results"]["facts_gen"]["exact_match,strip"], "identical_generations": same,
            "examples": [{"patchbay": gen_pb[d], "hf": gen_hf[d]} for d in sorted(gen_hf)[:3]],
        }
        ok &= same == len(gen_hf)
        print("gen", json.dumps(results["gen"]), flush=True)
    finally:
        proc.terminate()
        proc.wait()
    results["ok"] = bool(ok)
    Path(__file__).with_name("results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
