"""The reasoning asset checks catch malformed pairs and unverified accepted traces."""

from __future__ import annotations

from synth_assets.reasoning import cot_traces_accepted_verified, preference_pairs_well_formed
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning import cot, preference
from synth_lib.reasoning.tasks import problems_from_rows
from tests.scripted_engine import ScriptedEngine

CTX = RowContext("test-run")
SEED = make_row(
    stage="math_seeds",
    payload={"question": "1+1?", "answer": "#### 2", "gold": "2"},
    ctx=CTX,
    source=Source("gsm8k", "train.jsonl:1", "MIT"),
)


def _pair(chosen: str, rejected: str, source: str, constitution: str | None) -> dict:
    payload = {
        "prompt": "p",
        "chosen": chosen,
        "rejected": rejected,
        "pair_source": source,
        "chosen_score": 1.0,
        "rejected_score": 0.0,
        "constitution_hash": constitution,
    }
    row = make_row(stage="preference_pairs", payload=payload, ctx=CTX, parents=[SEED, SEED])
    row["weight"] = 1.0
    return row


def test_preference_check_passes_good_pairs_and_flags_bad_ones() -> None:
    good = rows_to_frame([_pair("a", "b", "verified_cot", None)], preference.FRAME_SCHEMA)
    assert preference_pairs_well_formed(good).passed
    bad = rows_to_frame(
        [_pair("same", " same", "verified_cot", None), _pair("a", "", "judged_cot", None)],
        preference.FRAME_SCHEMA,
    )
    result = preference_pairs_well_formed(bad)
    assert not result.passed
    counts = {k: v.value for k, v in result.metadata.items()}
    assert counts["chosen_equals_rejected"] == 1 and counts["empty_fields"] == 1
    assert counts["judged_without_constitution"] == 1


def test_cot_check_flags_an_accepted_wrong_trace() -> None:
    engine = ScriptedEngine(lambda r: "1+1=2\n#### 2" if r.request_id.endswith(":0") else "#### 3")
    outcome = cot.solve(problems_from_rows([SEED]), engine, CTX, k=2)
    rows = [{**r, "accepted": True} for r in outcome.kept] + [
        {**r, "accepted": False} for r in outcome.failed
    ]
    frame = rows_to_frame(rows, cot.FRAME_SCHEMA)
    assert cot_traces_accepted_verified(frame).passed
    tampered = rows_to_frame([{**r, "accepted": True} for r in rows], cot.FRAME_SCHEMA)
    result = cot_traces_accepted_verified(tampered)
    assert not result.passed and result.metadata["accepted_not_correct"].value == 1
