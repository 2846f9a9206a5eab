"""Debate verification: rounds, swapped judging, rejection reasons, and leaving the mix."""

from __future__ import annotations

import polars as pl
import pytest

from synth_lib.engines.base import GenerationRequest, GenerationResult
from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning.debate import (
    PAYLOAD_SCHEMA,
    DebateItem,
    drop_rejected,
    parse_decision,
    run_debates,
    verdict_rows,
)
from synth_lib.reasoning.seeding import in_share, stable_seed
from tests.scripted_engine import ScriptedEngine

CTX = RowContext(run_id="test-run")
SEED = make_row(
    stage="text_seeds", payload={"text": "x"}, ctx=CTX, source=Source("doc", "1", "PSF")
)


def target(text: str) -> dict:
    return make_row(stage="rephrasings", payload={"text": text}, ctx=CTX, parents=[SEED])


def responder(request: GenerationRequest) -> str | GenerationResult:
    prompt = request.prompt
    if request.request_id.endswith((":po", ":op")):
        if "faithful rewrite" in prompt:
            return "Decision: ACCEPT"
        if "invented fact" in prompt:
            return "Decision: REJECT"
        if "order-sensitive" in prompt:
            first = prompt.split("Is the claim true?")[0].rfind("Proponent")
            second = prompt.split("Is the claim true?")[0].rfind("Opponent")
            return "Decision: ACCEPT" if first > second else "Decision: REJECT"
        return "I cannot decide."
    if "broken debater" in prompt:
        return GenerationResult("", "", "error", error="boom")
    side = "for" if "argue FOR" in prompt else "against"
    return f"round argument {side} ({prompt.count('[Round')} earlier turns)"


ITEMS = {
    "accept": "faithful rewrite",
    "reject": "invented fact",
    "flip": "order-sensitive",
    "mute": "unclear",
    "broken": "broken debater",
}


@pytest.fixture(scope="module")
def debated():
    items = [DebateItem("The rewrite is faithful.", text, target(text)) for text in ITEMS.values()]
    engine = ScriptedEngine(responder)
    outcomes = run_debates(items, engine, rounds=2, seed=3)
    return items, engine, {text: o for text, o in zip(ITEMS, outcomes, strict=True)}


def test_decisions_and_reasons(debated) -> None:
    _, _, out = debated
    assert (out["accept"].accepted, out["accept"].reason) == (True, "judge_accepted")
    assert (out["reject"].accepted, out["reject"].reason) == (False, "judge_rejected")
    assert (out["flip"].accepted, out["flip"].reason) == (False, "judge_inconsistent")
    assert not out["flip"].consistent and out["reject"].consistent
    assert (out["mute"].accepted, out["mute"].reason) == (False, "judge_unparseable")
    assert (out["broken"].accepted, out["broken"].reason) == (False, "debater_engine_error")


def test_rounds_alternate_sides_and_transcripts_grow(debated) -> None:
    items, engine, out = debated
    transcript = out["accept"].transcript
    assert transcript.count("[Round 1]") == 2 and transcript.count("[Round 2]") == 2
    assert transcript.index("Proponent") < transcript.index("Opponent")
    assert "(3 earlier turns)" in transcript
    # 2 rounds x 2 sides + 2 judge orderings per live item; the broken one stops at turn 1
    assert len(engine.seen) == (len(items) - 1) * 6 + 1
    assert out["broken"].transcript.count("[Round") == 1


def test_verdict_rows_carry_hash_and_parent(debated) -> None:
    items, engine, out = debated
    rows = verdict_rows(list(out.values()), engine, CTX, rounds=2)
    frame = rows_to_frame(rows, PAYLOAD_SCHEMA)
    first = frame.row(0, named=True)
    assert first["transcript_sha256"] == sha256_hex(first["transcript"])
    assert first["parent_ids"] == [items[0].row["id"]] and first["target_stage"] == "rephrasings"
    assert frame["verdict"].to_list() == ["accept", "reject", "reject", "reject", "reject"]
    assert first["generator"]["template"] == "reasoning_debate_judge"


def test_rejected_samples_leave_with_reason(debated) -> None:
    items, engine, out = debated
    verdicts = rows_to_frame(
        verdict_rows(list(out.values()), engine, CTX, rounds=2), PAYLOAD_SCHEMA
    )
    samples = pl.DataFrame(
        {"id": [i.row["id"] for i in items] + ["not-debated"], "text": [*ITEMS, "other"]}
    )
    kept, dropped = drop_rejected(samples, verdicts)
    assert set(kept["text"]) == {"accept", "other"}
    assert dict(zip(dropped["text"], dropped["debate_reason"], strict=True))["flip"] == (
        "judge_inconsistent"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Decision: ACCEPT", "accept"),
        ("decision = reject", "reject"),
        ("I accept the claim", "accept"),
        ("accept or reject?", None),
        ("", None),
    ],
)
def test_parse_decision(text: str, expected: str | None) -> None:
    assert parse_decision(text) == expected


def test_share_and_seeds_are_deterministic() -> None:
    keys = [f"row-{i}" for i in range(2000)]
    chosen = [k for k in keys if in_share(k, 0.25, "debate")]
    assert chosen == [k for k in keys if in_share(k, 0.25, "debate")]
    assert 400 < len(chosen) < 600
    assert not any(in_share(k, 0.0) for k in keys) and all(in_share(k, 1.0) for k in keys)
    assert stable_seed("p", 0) == stable_seed("p", 0) != stable_seed("p", 1)
