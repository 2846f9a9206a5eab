"""Answer forcing in verified CoT: a finished sample without a final answer is asked for one,
and the forced answer is verified like any other (right: kept and marked, wrong: rejected)."""

from __future__ import annotations

import pytest

from synth_lib.engines.base import GenerationRequest, GenerationResult
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.reasoning.answers import forced_answer
from synth_lib.reasoning.cot import AnswerForcing, cot_summary, solve
from synth_lib.reasoning.tasks import problems_from_rows, reasoning_gym_rows
from tests.scripted_engine import ScriptedEngine

CTX = RowContext(run_id="test-run")
FORCE_PROMPT = 'State the final answer of this solution as "#### <answer>"'


def math_seed(question: str, gold: str) -> dict:
    payload = {"question": question, "answer": f"step\n#### {gold}", "gold": gold}
    source = Source("gsm8k", f"train.jsonl:{len(question)}", "MIT")
    return make_row(stage="math_seeds", payload=payload, ctx=CTX, source=source)


CLIPS = math_seed("Natalia sold 48 clips in April and half as many in May. Total?", "72")
RG_ROW = reasoning_gym_rows(["chain_sum"], ["easy"], 1, CTX)[0]

# Per problem: sample index -> (sample text or result, answer-only reply)
SCRIPT: dict[str, dict[int, tuple[str | GenerationResult, str]]] = {
    "Natalia": {
        0: ("April 48, May 48 / 2 = 24, so 48 + 24 = 72 clips.", "72"),
        1: ("April 48, May 48 / 2 = 24, and 48 - 24 = 24 clips.", "The answer is 24."),
        2: ("48 + 24 = 72.\n#### 72", "unused"),
        3: ("I am not sure how to add these numbers together.", "It depends on May."),
    },
    RG_ROW["question"]: {
        0: (GenerationResult("", "Adding the first two terms gives", "length"), "unused"),
        1: ("Adding the terms one at a time.", RG_ROW["gold"]),
        2: ("Adding the terms one at a time gives a total.", "#### 0"),
        3: (f"The sum is {RG_ROW['gold']}.\n#### {RG_ROW['gold']}", "unused"),
    },
}


def _script(request: GenerationRequest) -> tuple[str | GenerationResult, str]:
    index = int(request.request_id.split(":")[1])
    for key, samples in SCRIPT.items():
        if key in request.prompt:
            return samples[index]
    raise AssertionError(f"unexpected prompt {request.prompt[:80]}")


def responder(request: GenerationRequest) -> str | GenerationResult:
    sample, reply = _script(request)
    if request.request_id.endswith(":force"):
        assert FORCE_PROMPT in request.prompt
        return reply
    return sample


def _run(forcing: AnswerForcing | None):
    engine = ScriptedEngine(responder)
    problems = problems_from_rows([CLIPS, RG_ROW])
    outcome = solve(problems, engine, CTX, k=4, rationalize=False, forcing=forcing)
    rows = {(r["problem_id"], r["sample_index"]): r for r in outcome.kept + outcome.failed}
    return outcome, rows, engine


@pytest.fixture(scope="module")
def forced():
    return _run(AnswerForcing())


def _verdicts(row: dict) -> dict[str, dict]:
    return {v["name"]: v for v in row["verdicts"]}


def test_correct_forced_answer_is_kept_and_marked(forced) -> None:
    _, rows, _ = forced
    row = rows[(CLIPS["id"], 0)]
    assert row["correct"] and row["drop_reason"] is None
    assert row["predicted"] == "72"
    assert row["response"].endswith("48 + 24 = 72 clips.\n#### 72")
    verdicts = _verdicts(row)
    assert verdicts["answer_forced"]["passed"]
    assert verdicts["math_verify"]["passed"]
    gym = rows[(RG_ROW["id"], 1)]
    assert gym["correct"] and "answer_forced" in _verdicts(gym)
    assert _verdicts(gym)["reasoning_gym_score"]["passed"]


def test_wrong_forced_answer_is_rejected(forced) -> None:
    outcome, rows, _ = forced
    for key in [(CLIPS["id"], 1), (RG_ROW["id"], 2)]:
        row = rows[key]
        assert not row["correct"] and row["drop_reason"] == "wrong_answer"
        assert "answer_forced" in _verdicts(row)
    assert rows[(CLIPS["id"], 1)]["predicted"] == "24"
    kept = {(r["problem_id"], r["sample_index"]) for r in outcome.kept}
    assert kept == {(CLIPS["id"], 0), (CLIPS["id"], 2), (RG_ROW["id"], 1), (RG_ROW["id"], 3)}


def test_only_finished_samples_without_an_answer_are_forced(forced) -> None:
    outcome, rows, engine = forced
    asked = sorted(r.request_id for r in engine.seen if r.request_id.endswith(":force"))
    expected = [f"{CLIPS['id']}:{i}:force" for i in (0, 1, 3)]
    expected += [f"{RG_ROW['id']}:{i}:force" for i in (1, 2)]
    assert asked == sorted(expected)
    force_requests = [r for r in engine.seen if r.request_id.endswith(":force")]
    assert all(r.sampling.stop == ("\n",) and r.sampling.max_tokens <= 12 for r in force_requests)
    assert "answer_forced" not in _verdicts(rows[(CLIPS["id"], 2)])
    # a reply with no answer in it leaves the sample unanswered
    unanswered = rows[(CLIPS["id"], 3)]
    assert unanswered["predicted"] is None and unanswered["drop_reason"] == "no_final_answer"
    assert "#### " not in unanswered["response"]
    assert outcome.drops["sample_truncated"] == 1
    summary = cot_summary(problems_from_rows([CLIPS, RG_ROW]), outcome, 4)
    assert (summary["forced_attempts"], summary["forced_answers"]) == (5, 4)
    assert summary["forced_correct_samples"] == 2


def test_without_forcing_nothing_is_forced() -> None:
    outcome, rows, engine = _run(None)
    assert not [r for r in engine.seen if r.request_id.endswith(":force")]
    assert rows[(CLIPS["id"], 0)]["drop_reason"] == "no_final_answer"
    assert outcome.forced_attempts == 0 and len(outcome.kept) == 2


def test_forced_reply_parsing() -> None:
    assert forced_answer("72") == "72"
    assert forced_answer("$1,000.") == "1000"
    assert forced_answer("The answer is 18.\nmore text") == "18"
    assert forced_answer("#### 26") == "26"
    assert forced_answer('The answer is "#### 12".') == "12"
    assert forced_answer('The final answer of "####" is "####"') is None
    assert forced_answer("The answer is 4 legs.") is None
    assert forced_answer("2 + 9 = 11") == "11"
    assert forced_answer("12 - 59 - 61 = ") is None
    assert forced_answer("It is 7 or 8") is None
    assert forced_answer("It depends on May.") is None
    assert forced_answer("") is None
