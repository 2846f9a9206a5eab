"""Known edits for labelled benchmark sets: a set share of words changed, reproducibly."""

from __future__ import annotations

import random


def change_words(
    text: str, rate: float, vocab: list[str], rng: random.Random, substitute_only: bool = False
) -> str:
    """Change `rate` of the words: substitute, delete or insert one (or only substitute)."""
    words = text.split()
    chosen = set(rng.sample(range(len(words)), max(1, round(rate * len(words)))))
    out: list[str] = []
    for i, word in enumerate(words):
        if i not in chosen:
            out.append(word)
            continue
        op = 0 if substitute_only else rng.randrange(3)
        if op == 0:
            out.append(rng.choice(vocab))
        elif op == 2:
            out += [rng.choice(vocab), word]
    return " ".join(out)
