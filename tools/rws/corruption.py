"""Seeded text corruptions for the RWS robustness fixtures (tools/rws/).

Two corruption types, both deterministic for a given seed:

`typos` (keyboard and OCR noise, the "realistic corruption" of the issue). Each word of 2+ letters is
corrupted with probability WORD_RATE = 0.15; a corrupted word gets one edit picked uniformly from
  - substitution by a QWERTY neighbour key            ("tbe"  for "the")
  - deletion of one character                         ("tht"  for "that")
  - swap of two adjacent characters                   ("hte"  for "the")
  - doubling of one character                         ("thee" for "the")
  - an OCR-style confusion where one applies: rn↔m, cl↔d, li↔h, l→1, I→l, O→0, e→c, vv↔w, h→b, u→v,
    s→5 (else a neighbour-key substitution).
Speaker lines ("HAMLET.") are corrupted like everything else; newlines and spacing are kept.

`lower` (transcript-style text, the second type, for composition): everything lower-cased and every
character that is not a letter, digit, apostrophe, space or newline removed — what an ASR transcript or a
careless chat message looks like. No randomness.
"""
import random
import re

WORD_RATE = 0.15

_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
NEIGHBOURS = {}
for r, row in enumerate(_ROWS):
    for c, ch in enumerate(row):
        near = set()
        for dr in (-1, 0, 1):
            rr = r + dr
            if 0 <= rr < len(_ROWS):
                for dc in (-1, 0, 1):
                    cc = c + dc
                    if (dr or dc) and 0 <= cc < len(_ROWS[rr]):
                        near.add(_ROWS[rr][cc])
        NEIGHBOURS[ch] = sorted(near)

OCR = [("rn", "m"), ("m", "rn"), ("cl", "d"), ("d", "cl"), ("li", "h"), ("l", "1"), ("I", "l"), ("O", "0"),
       ("e", "c"), ("vv", "w"), ("w", "vv"), ("h", "b"), ("u", "v"), ("s", "5")]

WORD = re.compile(r"[A-Za-z']{2,}")


def _neighbour(rng, ch):
    near = NEIGHBOURS.get(ch.lower())
    if not near:
        return ch
    out = rng.choice(near)
    return out.upper() if ch.isupper() else out


def _edit(rng, w):
    kind = rng.randrange(5)
    i = rng.randrange(len(w))
    if kind == 0:
        return w[:i] + _neighbour(rng, w[i]) + w[i + 1:]
    if kind == 1:
        return w[:i] + w[i + 1:]
    if kind == 2:
        i = min(i, len(w) - 2)
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]
    if kind == 3:
        return w[:i] + w[i] + w[i:]
    options = [(src, dst) for src, dst in OCR if src in w]
    if not options:
        return w[:i] + _neighbour(rng, w[i]) + w[i + 1:]
    src, dst = rng.choice(options)
    starts = [m.start() for m in re.finditer(re.escape(src), w)]
    j = rng.choice(starts)
    return w[:j] + dst + w[j + len(src):]


def typos(text, seed):
    rng = random.Random(seed)
    return WORD.sub(lambda m: _edit(rng, m.group(0)) if rng.random() < WORD_RATE else m.group(0), text)


_NOT_KEPT = re.compile(r"[^a-z0-9' \n]")


def lower(text, seed=0):
    del seed
    return re.sub(r" +", " ", _NOT_KEPT.sub("", text.lower()))


CORRUPTIONS = {"typos": typos, "lower": lower}

if __name__ == "__main__":
    sample = "HAMLET.\nTo be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer"
    for name, fn in CORRUPTIONS.items():
        print(f"--- {name}\n{fn(sample, 1)}")
