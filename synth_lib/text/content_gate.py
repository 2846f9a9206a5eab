"""Does a rewrite carry its own passage's content? Key-term overlap, and canned-answer detection.

A rephrasing can be fluent, complete and novel and still say nothing about its passage:
a small model answers "Sure! Here is a paraphrase of the paragraph..." or drifts into a
generic essay, sometimes with the same text for every passage. Two checks catch that here,
each with its reason, before the anchor filter ever sees the row:

- `content_overlap`: the rewrite's key terms (lower-cased words and identifiers, stop
  words dropped, truncated to a 5-character stem so "iterates"/"iteration" match) are
  compared with its passage's. `support` is the share of the rewrite's terms that come
  from the passage, `coverage` the share of the passage's terms the rewrite carries; both
  must reach their threshold. The defaults (0.3, 0.15) were calibrated on
  SmolLM2-135M-Instruct's rewrites of the reference passages: in a trial 70% of 23
  rewrites passed against their own passage and none of 106 rewrite/other-passage pairs
  (what an unrelated answer looks like) did; on a default run's shard 75% of 20 rewrites
  passed and 3.2% of 1,260 mismatched pairs would have (its 64 passages include
  neighbouring topics). `benchmarks/content_gate_calibration.py` redoes this on any run.
- `canned_answer`: the same (near-identical) text returned for different passages.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from synth_lib.curation.dedup import lsh_candidates, minhash_signatures
from synth_lib.engines.output_checks import word_shingles
from synth_lib.provenance.schema import Verdict

_TERM = re.compile(r"[a-z_][a-z0-9_]*")
_STEM = 5
_STOP_WORD_TEXT = """
    a about above after again against all also an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    out over own same she should so some such than that the their theirs them themselves then
    there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves one two may
    must might shall let lets get got use used using like well way make makes made many much
    also every thing things something anything example sure here paraphrase paragraph text
    question answer rewrite rewritten version simple words following given says say said
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


def key_terms(text: str) -> set[str]:
    """Stemmed content terms: words and identifiers of 3+ letters that are not stop words."""
    return {t[:_STEM] for t in _TERM.findall(text.lower()) if len(t) >= 3 and t not in STOP_WORDS}


@dataclass(frozen=True)
class Overlap:
    support: float
    coverage: float
    shared: int


def term_overlap(rewrite: str, passage: str) -> Overlap:
    """Share of the rewrite's terms found in the passage, and of the passage's in the rewrite."""
    mine, theirs = key_terms(rewrite), key_terms(passage)
    shared = len(mine & theirs)
    return Overlap(
        support=shared / len(mine) if mine else 0.0,
        coverage=shared / len(theirs) if theirs else 0.0,
        shared=shared,
    )


@dataclass(frozen=True)
class ContentThresholds:
    """Minimum support and coverage a rewrite needs; calibrated, overridable per run."""

    min_support: float = 0.3
    min_coverage: float = 0.15


DEFAULT_THRESHOLDS = ContentThresholds()


def content_verdict(
    rewrite: str, passage: str, thresholds: ContentThresholds = DEFAULT_THRESHOLDS
) -> Verdict:
    """Pass a rewrite whose key terms come from, and cover enough of, its own passage."""
    overlap = term_overlap(rewrite, passage)
    score = round(min(overlap.support, overlap.coverage), 4)
    detail = f"support={overlap.support:.2f} coverage={overlap.coverage:.2f}"
    if overlap.support < thresholds.min_support:
        return Verdict("content_overlap", False, score, f"unrelated_to_passage: {detail}")
    if overlap.coverage < thresholds.min_coverage:
        return Verdict("content_overlap", False, score, f"misses_passage_content: {detail}")
    return Verdict("content_overlap", True, score, detail)


EXACT_JOIN_LIMIT = 500
LSH_BANDS, LSH_ROWS = 25, 5


def canned_groups(texts: Sequence[str], parents: Sequence[str], max_jaccard: float) -> set[int]:
    """Indices of texts (near-)identical to a text written for a different parent passage.

    Near-identical: word 3-gram Jaccard above `max_jaccard`, checked exactly on candidate
    pairs (all pairs took 22 s for 1,000 rewrites and grew with the square of a shard).
    Candidates: up to `EXACT_JOIN_LIMIT` texts, a prefix-filtered join that finds every
    pair; above it, MinHash LSH over the same shingles (25 bands of 5 rows: a pair at
    Jaccard 0.75 is missed with probability 0.001, at 0.85 under 1e-6), which stays linear
    when a shard's rewrites share a small vocabulary.
    """
    normalised = [" ".join(t.lower().split()) for t in texts]
    canned: set[int] = set()
    by_text: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(normalised):
        by_text[text].append(i)
    for same in by_text.values():
        if len({parents[i] for i in same}) > 1:
            canned.update(same)
    shingles = [word_shingles(text) for text in normalised]
    if len(texts) <= EXACT_JOIN_LIMIT:
        pairs = _prefix_join_candidates(shingles, max_jaccard)
    else:
        pairs = _lsh_candidates(shingles)
    for i, j in pairs:
        if parents[i] == parents[j] or (i in canned and j in canned):
            continue
        if len(shingles[i] & shingles[j]) / len(shingles[i] | shingles[j]) > max_jaccard:
            canned.update((i, j))
    return canned


def _prefix_join_candidates(
    shingles: Sequence[set[tuple[str, ...]]], threshold: float
) -> Iterator[tuple[int, int]]:
    """Every pair that may reach `threshold`: with shingles ordered rarest first, two sets
    at Jaccard >= t share one of the first |s| - ceil(t * |s|) + 1 shingles of either."""
    frequency = Counter(g for s in shingles for g in s)
    postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, grams in enumerate(shingles):
        if not grams:
            continue
        ordered = sorted(grams, key=lambda g: (frequency[g], g))
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered)) + 1]
        for j in {j for g in prefix for j in postings[g]}:
            yield j, i
        for g in prefix:
            postings[g].append(i)


def _lsh_candidates(shingles: Sequence[set[tuple[str, ...]]]) -> Iterator[tuple[int, int]]:
    """Pairs agreeing on a whole band of MinHash values over the shingles (stable hashes)."""
    present = [i for i, s in enumerate(shingles) if s]
    if len(present) < 2:
        return
    codes = {g: int.from_bytes(hashlib.blake2b(" ".join(g).encode(), digest_size=8).digest(),
                               "little") for s in shingles for g in s}  # fmt: skip
    doc = np.repeat(np.arange(len(present)), [len(shingles[i]) for i in present])
    grams = np.fromiter((codes[g] for i in present for g in shingles[i]), dtype=np.uint64)
    signatures = minhash_signatures(doc, grams, len(present), LSH_BANDS * LSH_ROWS, seed=42)
    for a, b in lsh_candidates(signatures, LSH_BANDS, LSH_ROWS):
        yield present[int(a)], present[int(b)]


def canned_verdict(is_canned: bool) -> Verdict:
    if is_canned:
        return Verdict("canned_answer", False, reason="same_text_for_other_passages")
    return Verdict("canned_answer", True)
