"""Builds two small lm-evaluation-harness tasks from models/facts.jsonl (local files, no download).

facts_mc: multiple choice. "The capital of Veldor is" -> one of four objects of the same relation (the true one
and three others, seeded), scored by loglikelihood of " <object>" -- lm-eval's echo + logprobs request.
facts_gen: generate_until. The same stem as a chat question, the model's greedy reply, exact match on the object.

Writes tools/.cache/lm_eval/tasks/{facts_mc,facts_gen}.yaml and facts.jsonl (the YAML holds an absolute path). Deterministic (seed 11).
"""
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tools" / ".cache" / "lm_eval" / "tasks"
N_ITEMS = 48


def main() -> None:
    facts = [json.loads(line) for line in (ROOT / "models" / "facts.jsonl").read_text().splitlines() if line.strip()]
    rng = random.Random(11)
    by_relation: dict[str, list[str]] = {}
    for f in facts:
        by_relation.setdefault(f["relation"], []).append(f["object"])
    items = []
    for f in facts:
        sentence, obj = f["sentence"], f["object"]
        at = sentence.rfind(obj)
        if at <= 0:
            continue
        stem = sentence[:at].rstrip()
        others = sorted({o for o in by_relation[f["relation"]] if o != obj})
        if len(others) < 3:
            continue
        choices = rng.sample(others, 3) + [obj]
        rng.shuffle(choices)
        items.append({"question": stem, "choices": choices, "gold": choices.index(obj), "answer": obj})
    rng.shuffle(items)
    items = items[:N_ITEMS]
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "facts.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in items))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (OUT / "facts_mc.yaml").write_text(
        "task: facts_mc\n" + common +
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: \"{{gold}}\"\nmetric_list:\n  - metric: acc\n"
    )
    (OUT / "facts_gen.yaml").write_text(
        "task: facts_gen\n" + common +
        "output_type: generate_until\ndoc_to_text: \"Complete the sentence: {{question}}\"\ndoc_to_target: \"{{answer}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 12\n  do_sample: false\n  temperature: 0\n"
        "metric_list:\n  - metric: exact_match\n    ignore_punctuation: true\n    ignore_case: true\n"
        "filter_list:\n  - name: strip\n    filter:\n      - function: regex\n        regex_pattern: \"^\\\\s*([^.]*)\"\n      - function: take_first\n"
    )
    print(f"{len(items)} items -> {data}")


if __name__ == "__main__":
    main()
