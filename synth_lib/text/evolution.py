"""Evol-Instruct in-depth evolution (Xu et al., 2023): make an instruction harder step by step.

Each step applies one operator (deepen, add a constraint, concretize) through its own
template, chosen per row and step by a stable hash, so a re-run asks the same things.
Evol-Instruct's elimination rule drops failed evolutions: an evolved instruction that is
empty, a copy of the one before, shorter than it (no information gained) or that leaks
the rewriting prompt fails its step, and the row keeps the last instruction that passed.
"""

from __future__ import annotations

import re

from synth_lib.engines.output_checks import shingle_jaccard
from synth_lib.provenance.schema import Verdict
from synth_lib.reasoning.seeding import stable_seed

OPERATORS: dict[str, str] = {
    "deepen": "instruction_evolve_deepen",
    "constrain": "instruction_evolve_constrain",
    "concretize": "instruction_evolve_concretize",
}
MAX_COPY_JACCARD = 0.9
_LABEL = re.compile(
    r"^\s*(?:#*\s*)?(?:rewritten task|rewritten prompt|task|instruction|question)\s*#*\s*:\s*",
    re.IGNORECASE,
)
_LEAK = re.compile(r"rewritten (?:task|prompt)|given prompt|#\w+ prompt#", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def clean_instruction(text: str) -> str:
    """The instruction without a leading label ('Task:', 'Rewritten task:') or wrapping quotes."""
    text = _LABEL.sub("", text.strip()).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def pick_operator(row_id: str, step: int, seed: int, operators: tuple[str, ...]) -> str:
    """The operator for (row, step): stable, and varied across rows and steps."""
    return operators[stable_seed("evolve", row_id, step, seed) % len(operators)]


def evolution_verdict(step: int, operator: str, before: str, after: str) -> Verdict:
    """Evol-Instruct's elimination check for one evolved instruction."""
    name = f"evolution_{step}_{operator}"
    words_before, words_after = len(_WORD.findall(before)), len(_WORD.findall(after))
    if not words_after:
        return Verdict(name, False, reason="empty")
    if _LEAK.search(after):
        return Verdict(name, False, reason="prompt_leak")
    similarity = shingle_jaccard(before, after)
    if similarity >= MAX_COPY_JACCARD:
        return Verdict(name, False, similarity, "no_change")
    if words_after < words_before:
        return Verdict(name, False, float(words_after - words_before), "no_information_gain")
    return Verdict(name, True, similarity)
