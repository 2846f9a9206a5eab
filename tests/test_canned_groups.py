"""The canned-answer join finds exactly the pairs an all-pairs comparison finds."""

from __future__ import annotations

import random

import pytest

from synth_lib.engines.output_checks import shingle_jaccard
from synth_lib.text import content_gate
from synth_lib.text.content_gate import canned_groups


def all_pairs(texts: list[str], parents: list[str], max_jaccard: float) -> set[int]:
    normalised = [" ".join(t.lower().split()) for t in texts]
    found: set[int] = set()
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if parents[i] != parents[j] and (
                normalised[i] == normalised[j]
                or shingle_jaccard(normalised[i], normalised[j]) > max_jaccard
            ):
                found.update((i, j))
    return found


def corpus(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    """Short texts over a small vocabulary, with edited copies, exact copies and blanks."""
    words = [f"w{k}" for k in range(30)]
    texts: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if texts and roll < 0.3:
            base = rng.choice(texts).split()
            for _ in range(rng.randint(0, 3)):
                if base:
                    base[rng.randrange(len(base))] = rng.choice(words)
            texts.append(" ".join(base))
        elif texts and roll < 0.4:
            texts.append(rng.choice(texts).upper())
        elif roll < 0.45:
            texts.append(rng.choice(["", "one", "two words"]))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))))
    parents = [f"p{rng.randrange(max(2, n // 4))}" for _ in range(n)]
    return texts, parents


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_jaccard", [0.0, 0.3, 0.7, 0.95])
def test_prefix_filtered_join_equals_all_pairs(seed: int, max_jaccard: float) -> None:
    texts, parents = corpus(random.Random(seed), 80)
    assert canned_groups(texts, parents, max_jaccard) == all_pairs(texts, parents, max_jaccard)


def test_the_same_text_for_one_passage_twice_is_not_canned() -> None:
    texts = ["the loop ends here and now", "the loop ends here and now", "something else"]
    assert canned_groups(texts, ["a", "a", "b"], 0.7) == set()
    assert canned_groups(texts, ["a", "b", "c"], 0.7) == {0, 1}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_jaccard", [0.7, 0.9])
def test_the_lsh_path_finds_the_same_pairs(
    monkeypatch: pytest.MonkeyPatch, seed: int, max_jaccard: float
) -> None:
    """Above the exact-join limit candidates come from MinHash LSH; on these corpora it
    misses no pair the all-pairs comparison finds."""
    monkeypatch.setattr(content_gate, "EXACT_JOIN_LIMIT", 0)
    texts, parents = corpus(random.Random(seed), 80)
    assert canned_groups(texts, parents, max_jaccard) == all_pairs(texts, parents, max_jaccard)


def test_the_lsh_path_on_rewrites_sharing_a_small_vocabulary() -> None:
    """3,000 rewrites over 31 words (many shared shingles, none near-identical): only the
    planted copy is canned."""
    rng = random.Random(0)
    vocab = [f"v{k}" for k in range(31)]
    texts = [" and ".join(rng.sample(vocab, 26)) for _ in range(3000)]
    texts[2999] = texts[5] + " indeed"
    parents = [str(i) for i in range(3000)]
    assert canned_groups(texts, parents, 0.7) == {5, 2999}
