"""An LLM judge bound to a written constitution: pairwise preferences and pointwise scores.

LLM judges favour whichever response they read first, so every comparison is asked
twice with the positions swapped and only a preference that survives the swap counts;
ties and flips are dropped with the reason. Judges can also be talked to: a comparison
with a response that addresses the judge is dropped unread (`judge_injection`), and the
responses the judge reads are fenced in tags it is told to treat as data. The constitution
is a versioned file whose hash, combined with the judge template's, goes into every judged
row's provenance. Replies are decoded to exactly one of the verdicts the template asks for
(`PAIRWISE_CHOICES`, `SCORE_CHOICES`), so a small judge cannot answer off-format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from synth_lib.engines.base import Engine, GenerationRequest, SamplingParams
from synth_lib.prompts import Template, load_template
from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import Generator, generator_for
from synth_lib.reasoning.injection import addresses_judge, fence
from synth_lib.reasoning.seeding import stable_seed

Preference = Literal["A", "B", "tie"]
CONSTITUTION = "constitution"
PAIRWISE_TEMPLATE = "reasoning_judge"
SCORE_TEMPLATE = "reasoning_score"
# The replies the templates ask for; with `constrained` the judge can write nothing else.
PAIRWISE_CHOICES = ("Verdict: A", "Verdict: B", "Verdict: tie")
SCORE_CHOICES = tuple(f"Score: {n}" for n in range(1, 11))

_BRACKETED = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(
    r"\b(?:verdict|winner|better|preferred|preference|choice)\b\s*(?:response)?\s*(?:is|:|=)?"
    r"\s*(?:response\s*)?\(?\b(A|B|tie)\b",
    re.IGNORECASE,
)
_PAIR_SCORES = re.compile(
    r"\b(?:response\s*)?A\b\s*[:=]\s*(\d+(?:\.\d+)?).*?\b(?:response\s*)?B\b\s*[:=]\s*(\d+(?:\.\d+)?)",
    re.DOTALL,
)
_LEADING = re.compile(r"^\W*(?:response\s*)?\(?(A|B)\)?(?=\s*$|\s*[.,:;!)\n]|\s+(?:is|wins)\b)")
_LEADING_TIE = re.compile(r"^\W*tie\b", re.IGNORECASE)
_SCORE = re.compile(r"\b(?:score|rating)\b\s*(?:is|:|=)?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\W*(\d+(?:\.\d+)?)\s*(?:/\s*10)?\W*$")


def _label(value: str) -> Preference:
    return "tie" if value.lower() == "tie" else "A" if value.upper() == "A" else "B"


def parse_preference(text: str | None) -> Preference | None:
    """'A', 'B' or 'tie' from a judge reply in any of the usual shapes; None if unreadable."""
    if not text:
        return None
    for pattern in (_BRACKETED, _LABELLED):
        found = pattern.findall(text)
        if found:
            return _label(found[-1])
    scores = _PAIR_SCORES.search(text)
    if scores:
        a, b = float(scores.group(1)), float(scores.group(2))
        return "tie" if a == b else "A" if a > b else "B"
    if _LEADING_TIE.match(text):
        return "tie"
    leading = _LEADING.match(text.strip())
    return _label(leading.group(1)) if leading else None


def parse_score(text: str | None, low: float = 1.0, high: float = 10.0) -> float | None:
    """A score in [low, high] from 'Score: 7', 'Rating = 7/10' or a bare '7'; else None."""
    if not text:
        return None
    found = _SCORE.findall(text) or _BARE_NUMBER.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if low <= value <= high else None


@dataclass(frozen=True)
class Comparison:
    """Two responses to one prompt; `key` names the comparison in request ids and seeds."""

    key: str
    prompt: str
    first: str
    second: str


@dataclass(frozen=True)
class Judgement:
    """Outcome of one swapped-pair comparison. `winner` is None when dropped (see `reason`)."""

    key: str
    winner: Literal["first", "second"] | None
    reason: str
    forward: Preference | None
    backward: Preference | None
    raw_forward: str
    raw_backward: str

    @property
    def consistent(self) -> bool:
        return self.winner is not None


def decide(forward: Preference | None, backward: Preference | None) -> tuple[str | None, str]:
    """Combine the two passes. Forward shows (first, second) as (A, B); backward swaps them."""
    if forward is None or backward is None:
        return None, "unparseable_judge_output"
    if forward == "tie" and backward == "tie":
        return None, "tie"
    first_forward = {"A": "first", "B": "second", "tie": "tie"}[forward]
    first_backward = {"A": "second", "B": "first", "tie": "tie"}[backward]
    if first_forward != first_backward:
        return None, "position_inconsistent"
    return first_forward, "consistent"


class Judge:
    """Pairwise and pointwise judging with one engine and one constitution.

    `constrained` (the default) asks the engine for exactly one of the replies the template
    names (`SamplingParams.choices`): the 135M default model left every free-form score
    unreadable, constrained it leaves none (benchmarks/constrained_judge_bench.py).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        constitution: Template | None = None,
        reject_injections: bool = True,
        constrained: bool = True,
    ) -> None:
        self.engine = engine
        self.reject_injections = reject_injections
        base = sampling or SamplingParams(temperature=0.0, max_tokens=32)
        self.pairwise_sampling = replace(base, choices=PAIRWISE_CHOICES) if constrained else base
        self.score_sampling = replace(base, choices=SCORE_CHOICES) if constrained else base
        self.seed = seed
        self.constitution = constitution or load_template(CONSTITUTION)

    @property
    def constitution_hash(self) -> str:
        return self.constitution.hash

    def _bound(self, name: str) -> Template:
        """The template with the constitution folded into its hash (either change shows)."""
        base = load_template(name)
        return Template(base.name, base.text, sha256_hex(base.hash + self.constitution.hash)[:16])

    def generator(self) -> Generator:
        """Provenance of a pairwise-judged row: judge model, template+constitution hash."""
        template = self._bound(PAIRWISE_TEMPLATE)
        return generator_for(self.engine.identity, template, self.pairwise_sampling, self.seed)

    def _injection(self, comparison: Comparison) -> str | None:
        if not self.reject_injections:
            return None
        for side, text in (("first", comparison.first), ("second", comparison.second)):
            why = addresses_judge(text)
            if why:
                return f"{side} response {why}"
        return None

    def compare(self, comparisons: Sequence[Comparison]) -> list[Judgement]:
        """Judge every comparison twice (A/B then B/A) in one batch; a comparison with a
        response that addresses the judge is dropped unread (reason `judge_injection`)."""
        template = load_template(PAIRWISE_TEMPLATE)
        injected = {i: why for i, c in enumerate(comparisons) if (why := self._injection(c))}
        asked = [i for i in range(len(comparisons)) if i not in injected]
        requests = []
        for c in (comparisons[i] for i in asked):
            for tag, a, b in (("ab", c.first, c.second), ("ba", c.second, c.first)):
                prompt = template.render(
                    constitution=self.constitution.text,
                    prompt=c.prompt,
                    response_a=fence(a, "response_a"),
                    response_b=fence(b, "response_b"),
                )
                requests.append(
                    GenerationRequest(
                        f"{c.key}:{tag}",
                        prompt,
                        self.pairwise_sampling,
                        stable_seed(self.seed, c.key),
                    )
                )
        results = self.engine.generate(requests) if requests else []
        out = {
            i: Judgement(comparisons[i].key, None, "judge_injection", None, None, why, "")
            for i, why in injected.items()
        }
        for n, i in enumerate(asked):
            c, fwd, bwd = comparisons[i], results[2 * n], results[2 * n + 1]
            forward = parse_preference(fwd.text) if fwd.ok else None
            backward = parse_preference(bwd.text) if bwd.ok else None
            winner, reason = decide(forward, backward)
            out[i] = Judgement(c.key, winner, reason, forward, backward, fwd.text, bwd.text)
        return [out[i] for i in range(len(comparisons))]

    def score(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """Pointwise 1-10 scores for (key, prompt, response) items; None where unreadable."""
        template = load_template(SCORE_TEMPLATE)
        requests = [
            GenerationRequest(
                f"{key}:score",
                template.render(constitution=self.constitution.text, prompt=p, response=r),
                self.score_sampling,
                stable_seed(self.seed, key, "score"),
            )
            for key, p, r in items
        ]
        return [parse_score(r.text) if r.ok else None for r in self.engine.generate(requests)]
