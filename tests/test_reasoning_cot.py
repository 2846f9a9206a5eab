"""Verified CoT with STaR: correct traces kept, wrong ones rejected, rationalized ones marked."""

from __future__ import annotations

import json
import re

import pytest

from synth_lib.engines.base import GenerationRequest, GenerationResult
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning.cot import FRAME_SCHEMA, cot_summary, pass_table, solve
from synth_lib.reasoning.tasks import (
    DIFFICULTY_LEVELS,
    PAYLOAD_SCHEMA,
    check_answer,
    gsm8k_difficulty,
    problems_from_rows,
    reasoning_gym_rows,
)
from tests.scripted_engine import ScriptedEngine

CTX = RowContext(run_id="test-run")


def math_seed(question: str, gold: str, steps: int = 2) -> dict:
    solution = "\n".join(f"step {i}" for i in range(steps)) + f"\n#### {gold}"
    payload = {"question": question, "answer": solution, "gold": gold}
    source = Source("gsm8k", f"train.jsonl:{abs(hash(question)) % 1000}", "MIT")
    return make_row(stage="math_seeds", payload=payload, ctx=CTX, source=source)


SOLVED = math_seed("Natalia sold 48 clips in April and half as many in May. Total?", "72")
RESCUED = math_seed("Weng earns 12 dollars an hour and works 50 minutes. Earned?", "10", 3)
ECHOED = math_seed("Betty has 5 apples and eats none. How many are left?", "5", 7)
RG_ROW = reasoning_gym_rows(["chain_sum"], ["easy"], 1, CTX)[0]

SAMPLES = {
    "Natalia": [
        "April 48, May 48/2 = 24, so 48 + 24 = 72.\n#### 72",
        "48 + 48 = 96, minus 25.\n#### 71",
        "I think it is seventy-something.",
        GenerationResult("", "48 + 24 = ", "length"),
    ],
    "Weng": ["#### 12"] * 4,
    "Betty": ["#### 4"] * 4,
}
RATIONALES = {
    "Weng": "Per minute she earns 12 / 60 = 0.2 dollars, and 0.2 * 50 = 10 dollars.\n#### 10",
    "Betty": "The hint says the correct final answer is 5.\n#### 5",
}


def responder(request: GenerationRequest) -> str | GenerationResult:
    index = request.request_id.rsplit(":", 1)[1]
    rg_question = RG_ROW["question"]
    if rg_question in request.prompt:
        return f"Adding the terms step by step gives {RG_ROW['gold']}.\n#### {RG_ROW['gold']}"
    for word, samples in SAMPLES.items():
        if word in request.prompt:
            if index == "rationalize":
                return RATIONALES[word]
            return samples[int(index)]
    raise AssertionError(f"unexpected prompt {request.prompt[:80]}")


@pytest.fixture(scope="module")
def outcome_and_engine():
    problems = problems_from_rows([SOLVED, RESCUED, ECHOED, RG_ROW])
    engine = ScriptedEngine(responder)
    return problems, solve(problems, engine, CTX, k=4), engine


def test_correct_traces_kept_and_wrong_ones_rejected(outcome_and_engine) -> None:
    _, outcome, _ = outcome_and_engine
    kept = {(r["problem_id"], r["sample_index"]) for r in outcome.kept}
    assert (SOLVED["id"], 0) in kept
    assert (RG_ROW["id"], 0) in kept
    failed = {(r["problem_id"], r["sample_index"]): r["drop_reason"] for r in outcome.failed}
    assert failed[(SOLVED["id"], 1)] == "wrong_answer"
    assert failed[(SOLVED["id"], 2)] == "no_final_answer"
    assert (SOLVED["id"], 3) not in failed and (SOLVED["id"], 3) not in kept
    assert outcome.drops["sample_truncated"] == 1
    assert all(r["correct"] for r in outcome.kept) and not any(r["correct"] for r in outcome.failed)
    assert [r["sample_index"] for r in outcome.kept if r["problem_id"] == RG_ROW["id"]] == [0]
    assert outcome.drops["duplicate_response"] == 3 + 3 + 3


def test_verdicts_and_provenance_of_a_kept_trace(outcome_and_engine) -> None:
    _, outcome, _ = outcome_and_engine
    row = next(r for r in outcome.kept if r["problem_id"] == SOLVED["id"])
    names = {v["name"]: v["passed"] for v in row["verdicts"]}
    assert names == {"generation": True, "final_answer": True, "math_verify": True}
    assert row["parent_ids"] == [SOLVED["id"]]
    assert row["root_seed_ids"] == [SOLVED["id"]]
    assert row["generator"]["template"] == "reasoning_cot"
    assert row["predicted"] == "72" and not row["rationalized"]
    rg = next(r for r in outcome.kept if r["problem_id"] == RG_ROW["id"])
    assert {v["name"] for v in rg["verdicts"]} >= {"reasoning_gym_score"}
    assert rg["task_type"] == "chain_sum" and rg["difficulty"] == "easy"


def test_rationalized_rows_are_marked_and_hint_free(outcome_and_engine) -> None:
    _, outcome, engine = outcome_and_engine
    rescued = [r for r in outcome.kept if r["problem_id"] == RESCUED["id"]]
    assert len(rescued) == 1
    row = rescued[0]
    assert row["rationalized"] is True
    assert "rationalized" in {v["name"] for v in row["verdicts"]}
    assert row["generator"]["template"] == "reasoning_rationalize"
    assert "Hint" not in row["prompt"] and "10" not in row["prompt"].split("Problem:")[0]
    hint_prompts = [r.prompt for r in engine.seen if r.request_id.endswith(":rationalize")]
    assert len(hint_prompts) == 2 and all("Hint" in p for p in hint_prompts)


def test_rationale_that_echoes_the_hint_is_rejected(outcome_and_engine) -> None:
    _, outcome, _ = outcome_and_engine
    assert not [r for r in outcome.kept if r["problem_id"] == ECHOED["id"]]
    assert outcome.drops["rationalization_rationale_mentions_hint"] == 1
    assert outcome.rationalization_attempts == 2 and outcome.rationalized == 1


def test_pass_rates_and_summary(outcome_and_engine) -> None:
    problems, outcome, _ = outcome_and_engine
    summary = cot_summary(problems, outcome, k=4)
    assert summary["pass_at_k"] == 0.5
    assert summary["sample_pass_rate"] == round(5 / 16, 4)
    assert summary["rationalization_yield"] == 0.5
    table = {(c["task_type"], c["difficulty"]): c for c in pass_table(problems, outcome, 4)}
    assert table[("gsm8k", "easy")]["pass_at_k"] == 1.0
    assert table[("gsm8k", "hard")]["rationalized"] == 0
    assert table[("gsm8k", "medium")]["rationalized"] == 1
    assert table[("chain_sum", "easy")]["sample_pass_rate"] == 1.0


def test_distinct_seeds_per_sample_and_frame_schema(outcome_and_engine) -> None:
    _, outcome, engine = outcome_and_engine
    seeds = [r.seed for r in engine.seen if r.request_id.startswith(RESCUED["id"])]
    assert len(set(seeds)) == len(seeds) == 5
    frame = rows_to_frame(outcome.kept + outcome.failed, FRAME_SCHEMA)
    assert frame.height == len(outcome.kept) + len(outcome.failed)
    assert frame["weight"].to_list() == [1.0] * frame.height


def test_reasoning_gym_rows_are_seeds_with_provenance() -> None:
    rows = reasoning_gym_rows(["leg_counting", "gcd"], ["easy", "hard"], 2, CTX)
    assert len(rows) == 8
    assert {(r["task_type"], r["difficulty"]) for r in rows} == {
        (t, d) for t in ("leg_counting", "gcd") for d in ("easy", "hard")
    }
    for row in rows:
        assert row["source"]["dataset"] == f"reasoning-gym/{row['task_type']}"
        assert row["source"]["license"] == "Apache-2.0"
        assert row["source"]["location"].startswith("seed=")
        assert row["root_seed_ids"] == [row["id"]] and not row["is_synthetic"]
        json.loads(row["metadata"])
    again = reasoning_gym_rows(["leg_counting", "gcd"], ["easy", "hard"], 2, CTX)
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert rows_to_frame(rows, PAYLOAD_SCHEMA).height == 8
    with pytest.raises(ValueError, match="unknown difficulties"):
        reasoning_gym_rows(["gcd"], ["impossible"], 1, CTX)
    assert set(DIFFICULTY_LEVELS) == {"easy", "medium", "hard"}


def test_reasoning_gym_scorer_is_authoritative() -> None:
    row = reasoning_gym_rows(["fraction_simplification"], ["easy"], 1, CTX)[0]
    (problem,) = problems_from_rows([row])
    num, den = (int(x) for x in re.findall(r"\d+", problem.gold))
    assert check_answer(problem, problem.gold)[0]
    assert not check_answer(problem, f"{num * 2}/{den * 2}")[0]
    assert check_answer(problem, None) == (False, 0.0, "reasoning_gym_score")
    assert not check_answer(problem, "garbage × ×")[0]


def test_gsm8k_difficulty_from_step_count() -> None:
    assert gsm8k_difficulty("a\nb\n#### 1") == "easy"
    assert gsm8k_difficulty("a\nb\nc\nd\n#### 1") == "medium"
    assert gsm8k_difficulty("\n".join("abcdef") + "\n#### 1") == "hard"
