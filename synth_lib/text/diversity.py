"""How varied a set of generated texts is: distinct-n at an equal token budget, embedding spread.

Used to measure what personas buy: the same seeds and sampling seeds are generated with
and without a persona, and the two sets are compared. Distinct-n depends on how much text
is counted, so both sides are cut to the same number of words first; the embedding
spread is the mean pairwise cosine distance (0: all the same direction), over the whole
set and among the variants of one seed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from synth_lib.curation.anchor_filter import Embedder, embed
from synth_lib.curation.drift import distinct_n
from synth_lib.curation.shingles import Tokens, tokenise


def _budget(tokens: Tokens, budget: int) -> Tokens:
    return Tokens(hashes=tokens.hashes[:budget], offsets=np.minimum(tokens.offsets, budget))


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean cosine distance over distinct pairs of unit vectors; 0.0 with fewer than two."""
    n = len(vectors)
    if n < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def spread(texts: Sequence[str], groups: Sequence[str], embedder: Embedder) -> dict[str, float]:
    """Embedding spread over all texts and, averaged, within each group (seed) of variants."""
    vectors = embed(embedder, list(texts))
    by_group: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        by_group[group].append(index)
    within = [mean_pairwise_distance(vectors[ix]) for ix in by_group.values() if len(ix) > 1]
    return {
        "embedding_spread": round(mean_pairwise_distance(vectors), 4),
        "within_seed_spread": round(float(np.mean(within)), 4) if within else 0.0,
    }


def diversity_gain(
    with_personas: Sequence[tuple[str, str]],
    without_personas: Sequence[tuple[str, str]],
    embedder: Embedder,
) -> dict[str, float | int | None]:
    """Compare two sets of (group, text): the same seeds generated with and without personas.

    Returns each side's distinct-1/2 (equal word budget) and spreads, and the ratios
    with/without (above 1.0: personas made the set more varied; None where "without" is 0).
    """
    out: dict[str, float | int | None] = {
        "rows_with_personas": len(with_personas),
        "rows_without_personas": len(without_personas),
    }
    if not with_personas or not without_personas:
        return out
    sides = {"with": with_personas, "without": without_personas}
    tokens = {k: tokenise([t for _, t in v]) for k, v in sides.items()}
    budget = int(min(len(t.hashes) for t in tokens.values()))
    out["word_budget"] = budget
    for side, items in sides.items():
        cut = _budget(tokens[side], budget)
        for n in (1, 2):
            out[f"distinct_{n}_{side}"] = round(distinct_n(cut, n), 4)
        measured = spread([t for _, t in items], [g for g, _ in items], embedder)
        for name, value in measured.items():
            out[f"{name}_{side}"] = value
    for name in ("distinct_1", "distinct_2", "embedding_spread", "within_seed_spread"):
        base = float(out[f"{name}_without"] or 0)
        out[f"{name}_gain"] = round(float(out[f"{name}_with"] or 0) / base, 4) if base else None
    return out
