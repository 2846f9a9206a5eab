"""Judge parsing, the position-swap rule, and DPO pairs (verified and judged) with provenance."""

from __future__ import annotations

import polars as pl
import pytest

from synth_lib.engines.base import GenerationRequest
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning.judge import Comparison, Judge, decide, parse_preference, parse_score
from synth_lib.reasoning.preference import (
    FRAME_SCHEMA,
    Candidate,
    judged_pairs,
    split_verified,
    verified_pairs,
)
from tests.scripted_engine import ScriptedEngine

CTX = RowContext(run_id="test-run")
SEED = make_row(
    stage="math_seeds",
    payload={"question": "2+2?", "answer": "#### 4", "gold": "4"},
    ctx=CTX,
    source=Source("gsm8k", "train.jsonl:1", "MIT"),
)


def sample(prompt: str, response: str, correct: bool, weight: float = 1.0) -> dict:
    payload = {"prompt": prompt, "response": response, "correct": correct}
    row = make_row(stage="cot_traces", payload=payload, ctx=CTX, parents=[SEED])
    row["weight"] = weight
    return row


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Verdict: A", "A"),
        ("verdict: b", "B"),
        ("[[tie]]", "tie"),
        ("After thinking, the better response is B.", "B"),
        ("A", "A"),
        ("B.", "B"),
        ("Response A: 7\nResponse B: 9", "B"),
        ("A: 5, B: 5", "tie"),
        ("Tie - both are fine", "tie"),
        ("A good answer would mention both", None),
        ("", None),
        (None, None),
        ("qz7 ## ~~", None),
    ],
)
def test_parse_preference(text: str | None, expected: str | None) -> None:
    assert parse_preference(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Score: 7", 7.0), ("rating = 8.5", 8.5), ("9/10", 9.0), ("Score: 42", None), ("meh", None)],
)
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text) == expected


def test_decide_requires_agreement_across_the_swap() -> None:
    assert decide("A", "B") == ("first", "consistent")
    assert decide("B", "A") == ("second", "consistent")
    assert decide("A", "A") == (None, "position_inconsistent")
    assert decide("tie", "tie") == (None, "tie")
    assert decide("tie", "A") == (None, "position_inconsistent")
    assert decide(None, "A") == (None, "unparseable_judge_output")


def test_verified_pairs_pair_correct_with_failed_for_the_same_prompt() -> None:
    good = [sample("P1", "2+2=4\n#### 4", True, weight=5.0), sample("P2", "#### 9", True)]
    bad = [sample("P1", "2+2=5\n#### 5", False), sample("P1", "#### 22", False)]
    outcome = verified_pairs(
        [Candidate(r["prompt"], r["response"], r, 1.0) for r in good],
        [Candidate(r["prompt"], r["response"], r, 0.0) for r in bad],
        CTX,
        source="verified_cot",
    )
    assert len(outcome.rows) == 2
    assert {r["rejected"] for r in outcome.rows} == {"2+2=5\n#### 5", "#### 22"}
    pair = outcome.rows[0]
    assert (pair["prompt"], pair["chosen"]) == ("P1", "2+2=4\n#### 4")
    rejected_row = next(r for r in bad if r["response"] == pair["rejected"])
    assert pair["parent_ids"] == [good[0]["id"], rejected_row["id"]]
    assert pair["root_seed_ids"] == [SEED["id"]]
    assert pair["stage"] == "preference_pairs" and pair["is_synthetic"] is False
    assert pair["weight"] == 5.0 and pair["chosen_score"] == 1.0 and pair["rejected_score"] == 0.0
    assert outcome.drops["no_failed_response_for_prompt"] == 1
    capped = verified_pairs(
        [Candidate(r["prompt"], r["response"], r) for r in good],
        [Candidate(r["prompt"], r["response"], r) for r in bad],
        CTX,
        source="verified_cot",
        max_pairs_per_prompt=1,
    )
    assert len(capped.rows) == 1
    frame = rows_to_frame(outcome.rows, FRAME_SCHEMA)
    assert frame.columns[:3] == ["prompt", "chosen", "rejected"]


def test_code_frame_with_passed_column_gives_verified_pairs() -> None:
    rows = [sample("def f", "return 1", True), sample("def f", "return 0", False)]
    for row, passed in zip(rows, (True, False), strict=True):
        row["passed"] = passed
    frame = pl.DataFrame([{k: v for k, v in r.items() if k != "created_at"} for r in rows])
    good, bad = split_verified(frame)
    outcome = verified_pairs(good, bad, CTX, source="verified_code")
    assert [(r["chosen"], r["rejected"], r["pair_source"]) for r in outcome.rows] == [
        ("return 1", "return 0", "verified_code")
    ]


def judge_responder(request: GenerationRequest) -> str:
    """Prefers the response saying 'clear'; flips with position on the 'fickle' prompt."""
    if "fickle" in request.prompt:
        return "Verdict: A"
    if "even" in request.prompt:
        return "Verdict: tie"
    a_part = request.prompt.split("Response A:")[1].split("Response B:")[0]
    return "Verdict: A" if "clear" in a_part else "Verdict: B"


def test_judged_pairs_keep_consistent_and_drop_ties_and_flips() -> None:
    judge = Judge(ScriptedEngine(judge_responder))
    candidates = []
    for prompt in ("stable prompt", "fickle prompt", "even prompt"):
        for response in ("a clear derivation", "a muddled derivation"):
            row = sample(prompt, response, True)
            candidates.append(Candidate(prompt, response, row))
    outcome = judged_pairs(candidates, judge, CTX, source="judged_cot")
    assert len(outcome.rows) == 1
    pair = outcome.rows[0]
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (
        "stable prompt",
        "a clear derivation",
        "a muddled derivation",
    )
    assert pair["constitution_hash"] == load_template("constitution").hash
    assert pair["generator"]["template"] == "reasoning_judge"
    assert pair["generator"]["template_hash"] != load_template("reasoning_judge").hash
    assert pair["verdicts"][0]["name"] == "judge_position_swap"
    assert dict(outcome.drops) == {"judged_position_inconsistent": 1, "judged_tie": 1}
    seen = judge.engine.seen
    assert len(seen) == 6 and {r.request_id.rsplit(":", 1)[1] for r in seen} == {"ab", "ba"}


def test_judge_positions_really_swap() -> None:
    engine = ScriptedEngine(lambda r: "Verdict: A")
    Judge(engine).compare([Comparison("k", "p", "FIRST", "SECOND")])
    forward, backward = engine.seen
    assert forward.prompt.index("FIRST") < forward.prompt.index("SECOND")
    assert backward.prompt.index("SECOND") < backward.prompt.index("FIRST")
    assert load_template("constitution").text.strip() in forward.prompt


def test_judge_scores_are_parsed_per_item() -> None:
    engine = ScriptedEngine(lambda r: "Score: 8" if "good" in r.prompt else "no idea")
    scores = Judge(engine).score([("1", "p", "good answer"), ("2", "p", "bad answer")])
    assert scores == [8.0, None]
