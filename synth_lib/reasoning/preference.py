"""Preference pairs in the format TRL's DPOTrainer reads: `prompt`, `chosen`, `rejected`.

Two sources. Verified pairs: for one prompt, a response a checker accepted against one it
rejected (CoT traces against the gold answer, code against its tests): the label is
ground truth. Judged pairs (RLAIF): two responses a verifier cannot tell apart, ranked
by the constitution judge, kept only when the preference survives the position swap.
Every pair's parents are its chosen and rejected rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synth_lib.provenance.schema import RowContext, Verdict, make_row
from synth_lib.reasoning.judge import Comparison, Judge

STAGE = "preference_pairs"
PAYLOAD_SCHEMA: dict[str, pl.DataType] = {
    "prompt": pl.Utf8(),
    "chosen": pl.Utf8(),
    "rejected": pl.Utf8(),
    "pair_source": pl.Utf8(),
    "chosen_score": pl.Float64(),
    "rejected_score": pl.Float64(),
    "constitution_hash": pl.Utf8(),
}
FRAME_SCHEMA: dict[str, pl.DataType] = {**PAYLOAD_SCHEMA, "weight": pl.Float64()}


@dataclass(frozen=True)
class Candidate:
    """A response to `prompt` that may go into a pair; `row` is its provenance parent.

    `score` (e.g. a judge score) only orders candidates; a pair's `chosen_score` and
    `rejected_score` are the reward behind its label: the checker's pass/fail for
    verified pairs, the share of the two swapped judgements won for judged pairs."""

    prompt: str
    response: str
    row: Mapping[str, Any]
    score: float | None = None


@dataclass
class PairOutcome:
    rows: list[dict[str, Any]] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)


def _pair_row(
    chosen: Candidate,
    rejected: Candidate,
    *,
    scores: tuple[float, float],
    source: str,
    ctx: RowContext,
    verdicts: Sequence[Verdict],
    judge: Judge | None = None,
) -> dict[str, Any]:
    payload = {
        "prompt": chosen.prompt,
        "chosen": chosen.response,
        "rejected": rejected.response,
        "pair_source": source,
        "chosen_score": scores[0],
        "rejected_score": scores[1],
        "constitution_hash": judge.constitution_hash if judge else None,
    }
    row = make_row(
        stage=STAGE,
        payload=payload,
        ctx=ctx,
        parents=[chosen.row, rejected.row],
        generator=judge.generator() if judge else None,
        verdicts=verdicts,
    )
    row["weight"] = float(chosen.row.get("weight") or 1.0)
    return row


def _by_prompt(candidates: Iterable[Candidate]) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[c.prompt].append(c)
    return groups


def verified_pairs(
    good: Iterable[Candidate],
    bad: Iterable[Candidate],
    ctx: RowContext,
    *,
    source: str,
    max_pairs_per_prompt: int = 2,
) -> PairOutcome:
    """Pair verified-correct with failed responses to the same prompt.

    Each failed response is used once, against the correct ones in turn (best-scored first),
    up to `max_pairs_per_prompt` pairs."""
    outcome = PairOutcome()
    bad_groups = _by_prompt(bad)
    for prompt, winners in _by_prompt(good).items():
        losers = sorted(bad_groups.get(prompt, []), key=lambda c: str(c.row["id"]))
        if not losers:
            outcome.drops["no_failed_response_for_prompt"] += len(winners)
            continue
        winners = sorted(winners, key=lambda c: (-(c.score or 0.0), str(c.row["id"])))
        pairs = 0
        for index, rejected in enumerate(losers):
            if pairs >= max_pairs_per_prompt:
                break
            chosen = winners[index % len(winners)]
            if chosen.response.strip() == rejected.response.strip():
                outcome.drops["identical_responses"] += 1
                continue
            verdict = Verdict("verified_preference", True, 1.0, f"{source}: checker-verified")
            outcome.rows.append(
                _pair_row(
                    chosen, rejected, scores=(1.0, 0.0), source=source, ctx=ctx, verdicts=[verdict]
                )
            )
            pairs += 1
    return outcome


def candidates_from_frame(
    frame: pl.DataFrame,
    *,
    prompt: str = "prompt",
    response: str = "response",
    score: str = "score",
) -> list[Candidate]:
    """Candidates from any frame with prompt/response columns (plus provenance columns)."""
    return [
        Candidate(row[prompt], row[response], row, row.get(score))
        for row in frame.to_dicts()
        if row.get(prompt) and row.get(response)
    ]


def split_verified(
    frame: pl.DataFrame, passed: str = "passed"
) -> tuple[list[Candidate], list[Candidate]]:
    """(passing, failing) candidates of a verified frame, e.g. verified_code's samples."""
    candidates = candidates_from_frame(frame)
    good = [c for c in candidates if c.row.get(passed)]
    bad = [c for c in candidates if c.row.get(passed) is False]
    return good, bad


def code_pairs(
    accepted: pl.DataFrame, rejects: pl.DataFrame, ctx: RowContext, max_pairs_per_prompt: int
) -> PairOutcome:
    """Sandbox-passed vs failed code for the same prompt. A candidate that never became a
    program (truncated, empty) is no rejected completion, so it is left out."""
    failed = rejects.filter(pl.col("reject_reason").fill_null("") != "generation_failed")
    rows = pl.concat([accepted, failed], how="diagonal_relaxed").sort("id")
    good, bad = split_verified(rows, passed="accepted")
    outcome = verified_pairs(
        good, bad, ctx, source="verified_code", max_pairs_per_prompt=max_pairs_per_prompt
    )
    outcome.drops = Counter({f"code_{k}": v for k, v in outcome.drops.items()})
    return outcome


def comparisons_for(
    candidates: Iterable[Candidate], max_pairs_per_prompt: int = 1
) -> list[tuple[Comparison, Candidate, Candidate]]:
    """Distinct-response pairs per prompt, in a stable order, ready for the judge."""
    out = []
    for prompt, group in _by_prompt(candidates).items():
        unique = {c.response.strip(): c for c in sorted(group, key=lambda c: str(c.row["id"]))}
        members = list(unique.values())
        pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
        for a, b in pairs[:max_pairs_per_prompt]:
            key = f"{a.row['id']}|{b.row['id']}"
            out.append((Comparison(key, prompt, a.response, b.response), a, b))
    return out


def judged_pairs(
    candidates: Iterable[Candidate],
    judge: Judge,
    ctx: RowContext,
    *,
    source: str,
    max_pairs_per_prompt: int = 1,
) -> PairOutcome:
    """RLAIF pairs: judged twice with positions swapped; ties and flips dropped with reasons."""
    outcome = PairOutcome()
    planned = comparisons_for(candidates, max_pairs_per_prompt)
    judgements = judge.compare([c for c, _, _ in planned])
    for (_, first, second), judgement in zip(planned, judgements, strict=True):
        if judgement.winner is None:
            outcome.drops[f"judged_{judgement.reason}"] += 1
            continue
        chosen, rejected = (first, second) if judgement.winner == "first" else (second, first)
        verdict = Verdict(
            "judge_position_swap",
            True,
            1.0,
            f"forward={judgement.forward} backward={judgement.backward}",
        )
        row = _pair_row(
            chosen,
            rejected,
            scores=(1.0, 0.0),
            source=source,
            ctx=ctx,
            verdicts=[verdict],
            judge=judge,
        )
        outcome.rows.append(row)
    return outcome
