"""Checks every generated text goes through before it can become a row.

Engine failures, truncation (`finish_reason=length`), content filters, empty output and
refusals are classified here once, so no stage parses a broken response into a row.
"""

from __future__ import annotations

import re

from synth_lib.engines.base import GenerationResult
from synth_lib.provenance.schema import Verdict

_REFUSAL = re.compile(
    r"^\W*(?:I(?:'m| am) sorry|I can(?:'|no)t (?:help|assist|do|comply|provide)|I cannot"
    r"|I(?:'m| am) (?:not able|unable) to|As an AI|I won't)",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")


def generation_verdict(result: GenerationResult) -> Verdict:
    """Pass only complete, non-empty, non-refusal text; otherwise say why."""
    if result.finish_reason == "error":
        return Verdict("generation", False, reason=f"engine_error: {result.error}")
    if result.finish_reason == "length":
        return Verdict("generation", False, reason="truncated")
    if result.finish_reason == "content_filter":
        return Verdict("generation", False, reason="content_filter")
    text = result.text.strip()
    if not text:
        return Verdict("generation", False, reason="empty")
    if _REFUSAL.search(text):
        return Verdict("generation", False, reason="refusal")
    return Verdict("generation", True)


def word_shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def shingle_jaccard(a: str, b: str, n: int = 3) -> float:
    sa, sb = word_shingles(a, n), word_shingles(b, n)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def novelty_verdict(output: str, source: str, max_jaccard: float) -> Verdict:
    """Reject near-copies of the input: word 3-gram Jaccard above `max_jaccard`."""
    similarity = shingle_jaccard(output, source)
    if similarity > max_jaccard:
        return Verdict("novelty", False, score=similarity, reason="near_copy_of_input")
    return Verdict("novelty", True, score=similarity)
