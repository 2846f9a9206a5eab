"""Debate verification for samples no symbolic check can verify (Irving et al., 2018).

A proponent and an opponent argue about a claim on the sample for a set number of
rounds; a judge reads both sides and decides. The judge decides twice, with the order
of the two sides swapped: only a decision that survives the swap accepts the sample.
Anything else (reject, flip, unreadable reply, failed generation) rejects it, with
the reason, and the transcript's sha256 is kept so the decision can be audited.
The judge's reply is decoded to exactly one of `DECISION_CHOICES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

from synth_lib.engines.base import Engine, GenerationRequest, SamplingParams
from synth_lib.engines.output_checks import generation_verdict
from synth_lib.prompts import load_template
from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import RowContext, Verdict, generator_for, make_row
from synth_lib.reasoning.injection import addresses_judge, fence
from synth_lib.reasoning.seeding import stable_seed

STAGE = "debate_verdicts"
TEMPLATES = ("reasoning_debate_proponent", "reasoning_debate_opponent", "reasoning_debate_judge")
Decision = Literal["accept", "reject"]
PAYLOAD_SCHEMA: dict[str, pl.DataType] = {
    "target_id": pl.Utf8(),
    "target_stage": pl.Utf8(),
    "claim": pl.Utf8(),
    "verdict": pl.Utf8(),
    "accepted": pl.Boolean(),
    "consistent": pl.Boolean(),
    "reason": pl.Utf8(),
    "rounds": pl.Int64(),
    "transcript": pl.Utf8(),
    "transcript_sha256": pl.Utf8(),
}
# The replies the judge template asks for; the judge is decoded to exactly one of them.
DECISION_CHOICES = ("Decision: ACCEPT", "Decision: REJECT")
_DECISION = re.compile(r"\bdecision\b\s*[:=]?\s*\**\s*(accept|reject)", re.IGNORECASE)
_WORD = re.compile(r"\b(accept|reject)(?:s|ed)?\b", re.IGNORECASE)


def parse_decision(text: str | None) -> Decision | None:
    """'accept' / 'reject' from 'Decision: ACCEPT' or a reply naming exactly one of them."""
    if not text:
        return None
    labelled = _DECISION.findall(text)
    if labelled:
        return labelled[-1].lower()
    words = {w.lower() for w in _WORD.findall(text)}
    return words.pop() if len(words) == 1 else None


@dataclass(frozen=True)
class DebateItem:
    """A sample to debate: the claim about it, the material it is judged on, and its row."""

    claim: str
    context: str
    row: Mapping[str, Any]

    @property
    def key(self) -> str:
        return str(self.row["id"])


@dataclass(frozen=True)
class DebateOutcome:
    item: DebateItem
    accepted: bool
    consistent: bool
    reason: str
    transcript: str
    decisions: tuple[Decision | None, Decision | None]


def outcome_reason(first: Decision | None, second: Decision | None) -> tuple[bool, bool, str]:
    """(accepted, consistent, reason) from the two orderings' decisions."""
    if first is None or second is None:
        return False, False, "judge_unparseable"
    if first != second:
        return False, False, "judge_inconsistent"
    return first == "accept", True, "judge_accepted" if first == "accept" else "judge_rejected"


def judge_sampling_for(sampling: SamplingParams | None, constrained: bool = True) -> SamplingParams:
    """The debate judge's sampling: `sampling` (default greedy, 16 tokens), constrained to
    `DECISION_CHOICES` unless told otherwise."""
    base = sampling or SamplingParams(temperature=0.0, max_tokens=16)
    return replace(base, choices=DECISION_CHOICES) if constrained else base


def run_debates(
    items: Sequence[DebateItem],
    engine: Engine,
    *,
    rounds: int = 2,
    sampling: SamplingParams | None = None,
    judge_sampling: SamplingParams | None = None,
    seed: int = 0,
    constrained: bool = True,
) -> list[DebateOutcome]:
    """All debates advance together: each turn is one batch across the live items.

    A debate whose turn fails (truncated, empty, refused, engine error) stops there and is
    rejected with that reason: no further turns or judging are spent on it."""
    sampling = sampling or SamplingParams(temperature=0.7, max_tokens=128)
    judge_sampling = judge_sampling_for(judge_sampling, constrained)
    sides = {"Proponent": "reasoning_debate_proponent", "Opponent": "reasoning_debate_opponent"}
    turns: list[list[tuple[str, int, str]]] = [[] for _ in items]
    # material that addresses the judge is an injection: rejected before any debate
    failed: list[str | None] = [
        "judge_injection" if addresses_judge(item.context) else None for item in items
    ]
    for round_no in range(1, rounds + 1):
        for side, name in sides.items():
            template = load_template(name)
            active = [i for i in range(len(items)) if failed[i] is None]
            requests = [
                GenerationRequest(
                    f"{items[i].key}:{round_no}:{side}",
                    template.render(
                        claim=items[i].claim,
                        context=items[i].context,
                        round=round_no,
                        rounds=rounds,
                        transcript=_transcript(turns[i]) or "(no arguments yet)",
                    ),
                    sampling,
                    stable_seed(seed, items[i].key, round_no, side),
                )
                for i in active
            ]
            if not requests:
                break
            for i, result in zip(active, engine.generate(requests), strict=True):
                verdict = generation_verdict(result)
                if not verdict.passed:
                    failed[i] = f"debater_{(verdict.reason or 'failed').split(':')[0]}"
                turns[i].append((side, round_no, result.text.strip()))
    live = [i for i, reason in enumerate(failed) if reason is None]
    judged = _judge(
        [items[i] for i in live], [turns[i] for i in live], engine, judge_sampling, seed
    )
    decisions = dict(zip(live, judged, strict=True))
    outcomes = []
    for i, item in enumerate(items):
        decision = decisions.get(i, (None, None))
        accepted, consistent, reason = outcome_reason(*decision)
        if failed[i] is not None:
            accepted, reason = False, failed[i]
        transcript = _transcript(turns[i])
        outcomes.append(DebateOutcome(item, accepted, consistent, reason, transcript, decision))
    return outcomes


def _transcript(turns: Sequence[tuple[str, int, str]]) -> str:
    return "\n\n".join(f"[Round {r}] {side}: {text}" for side, r, text in turns)


def _judge(
    items: Sequence[DebateItem],
    turns: Sequence[list[tuple[str, int, str]]],
    engine: Engine,
    sampling: SamplingParams,
    seed: int,
) -> list[tuple[Decision | None, Decision | None]]:
    template = load_template("reasoning_debate_judge")
    requests = []
    for item, item_turns in zip(items, turns, strict=True):
        blocks = {
            side: "\n".join(text for s, _, text in item_turns if s == side) or "(nothing)"
            for side in ("Proponent", "Opponent")
        }
        for tag, order in (("po", ("Proponent", "Opponent")), ("op", ("Opponent", "Proponent"))):
            labels = [
                f"{side} (arguing {'for' if side == 'Proponent' else 'against'} the claim)"
                for side in order
            ]
            prompt = template.render(
                claim=item.claim,
                context=fence(item.context, "material"),
                first_label=labels[0],
                first_arguments=fence(blocks[order[0]], "arguments_1"),
                second_label=labels[1],
                second_arguments=fence(blocks[order[1]], "arguments_2"),
            )
            requests.append(
                GenerationRequest(
                    f"{item.key}:judge:{tag}", prompt, sampling, stable_seed(seed, item.key)
                )
            )
    results = engine.generate(requests)
    texts = [r.text if r.ok else None for r in results]
    return [
        (parse_decision(texts[2 * i]), parse_decision(texts[2 * i + 1])) for i in range(len(items))
    ]


def verdict_rows(
    outcomes: Sequence[DebateOutcome],
    engine: Engine,
    ctx: RowContext,
    *,
    rounds: int,
    judge_sampling: SamplingParams | None = None,
    seed: int = 0,
    constrained: bool = True,
) -> list[dict[str, Any]]:
    """One provenance row per debated sample; its parent is the sample itself."""
    judge_sampling = judge_sampling_for(judge_sampling, constrained)
    generator = generator_for(engine.identity, load_template(TEMPLATES[-1]), judge_sampling, seed)
    rows = []
    for o in outcomes:
        payload = {
            "target_id": o.item.key,
            "target_stage": o.item.row.get("stage"),
            "claim": o.item.claim,
            "verdict": "accept" if o.accepted else "reject",
            "accepted": o.accepted,
            "consistent": o.consistent,
            "reason": o.reason,
            "rounds": rounds,
            "transcript": o.transcript,
            "transcript_sha256": sha256_hex(o.transcript),
        }
        verdict = Verdict("debate", o.accepted, None, o.reason)
        rows.append(
            make_row(
                stage=STAGE,
                payload=payload,
                ctx=ctx,
                parents=[o.item.row],
                generator=generator,
                verdicts=[verdict],
            )
        )
    return rows


def drop_rejected(frame: pl.DataFrame, verdicts: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, dropped) rows of `frame`: dropped are those a debate rejected, with its reason."""
    rejected = verdicts.filter(~pl.col("accepted")).select(
        pl.col("target_id").alias("id"), pl.col("reason").alias("debate_reason")
    )
    if frame.is_empty() or rejected.is_empty():
        return frame, frame.clear().with_columns(pl.lit(None, pl.Utf8).alias("debate_reason"))
    dropped = frame.join(rejected.unique("id"), on="id", how="inner")
    return frame.join(rejected, on="id", how="anti"), dropped
