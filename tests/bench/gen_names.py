#!/usr/bin/env python3
"""Synthetic block-list names shaped like the real ones.

Usage: gen_names.py UT1_BLACKLISTS_DIR TOTAL OUT_FILE

Words and top-level domains are taken from the UT1 lists themselves, then combined
(word, separator, word, optional number, TLD) until OUT_FILE holds TOTAL distinct
names, counting the UT1 names it also holds; written byte-sorted, one per line, as UT1
ships its lists. Deterministic (fixed seed), so every run measures the same list.
"""
import os
import random
import re
import sys

root, total, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = set()
for cat in sorted(os.listdir(root)):
    path = os.path.join(root, cat, "domains")
    if os.path.islink(os.path.join(root, cat)) or not os.path.isfile(path):
        continue
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            n = line.strip().lstrip(".").lower()
            if n and re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+", n):
                names.add(n)
words, tlds = [], []
for n in names:
    labels = n.split(".")
    tlds.append(labels[-1])
    for part in re.split(r"[-_0-9]+", labels[-2]):
        if 3 <= len(part) <= 12:
            words.append(part)
rng = random.Random(20260817)
while len(names) < total:
    w = rng.choice(words) + rng.choice(["", "", "-", ""]) + rng.choice(words)
    if rng.random() < 0.3:
        w += str(rng.randint(1, 999))
    prefix = rng.choice(["", "", "", "www.", "m.", "cdn."])
    names.add(prefix + w + "." + rng.choice(tlds))
with open(out, "w") as f:
    for n in sorted(names, key=lambda s: s.encode()):
        f.write(n + "\n")
