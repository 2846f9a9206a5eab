"""Final-answer extraction and equivalence: the edge cases that decide which traces are kept."""

from __future__ import annotations

import random

import pytest

from synth_lib.reasoning.answers import answers_match, extract_answer, hedged, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("48/2 = 24 clips in May.\n48+24 = 72\n#### 72", "72"),
        ("so she earned $1,000.\n#### $1,000", "1000"),
        ("Adding up, the answer is 42.", "42"),
        ("Final answer: -7", "-7"),
        ("We get \\boxed{\\frac{1}{2}} in the end", "\\frac{1}{2}"),
        ("nested \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{\\sqrt{2}}{2}"),
        ("The answer is 3.\nWait, recheck.\nThe answer is 5.", "5"),
        ("#### - 4", "-4"),
        ("The answer is \\text{12} apples", "12 apples"),
    ],
)
def test_extract_answer_reads_explicit_markers(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [None, "", "Natalia sold 48 clips and then 24 more, 72 in all", "\\boxed{unbalanced"],
)
def test_extract_answer_needs_a_marker(text: str | None) -> None:
    assert extract_answer(text) is None


def test_extract_answer_ignores_overlong_answers() -> None:
    assert extract_answer("#### " + "9" * 200) is None


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("1,000", "1000"),
        ("0.5", "1/2"),
        ("$72", "72"),
        ("72.0", "72"),
        ("\\frac{138}{583}", "138/583"),
        ("-4", "-4"),
        ("50%", "50"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_equivalent_answers_match(pred: str, gold: str) -> None:
    assert answers_match(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("71", "72"), ("0.51", "1/2"), (None, "1"), ("", "1"), ("ten", "11"), ("1/0", "1")],
)
def test_different_answers_do_not_match(pred: str | None, gold: str) -> None:
    assert not answers_match(pred, gold)


def test_noise_never_raises() -> None:
    rng = random.Random(0)
    alphabet = "0123456789 {}\\/$#,.-+*^()[]abcxyz=\n"
    for _ in range(300):
        noise = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        pred = extract_answer(noise + "\n#### " + noise[:30])
        assert isinstance(answers_match(pred, "12"), bool)


def test_normalize_strips_decoration() -> None:
    assert normalize_answer(" \\$1,234,567. ") == "1234567"


def test_plain_arithmetic_fallback_is_exact_and_safe() -> None:
    from synth_lib.reasoning.answers import _arithmetic_equal

    assert _arithmetic_equal("3*4+2", "14")
    assert _arithmetic_equal("1/3+1/6", "0.5")
    assert not _arithmetic_equal("__import__('os').getcwd()", "0")
    assert not _arithmetic_equal("9**9**9", "0")


@pytest.mark.parametrize(
    ("text", "caught"),
    [
        ("Answer: 17\nAnswer: 18", "different final answers"),
        ("so \\boxed{17}, or rather \\boxed{18}", "different final answers"),
        ("#### 17\nThe answer is 18.", "different final answers"),
        ("The answer is 17 or 18.", "alternatives"),
        ("\\boxed{17 \\text{ or } 18}", "alternatives"),
    ],
)
def test_hedging_between_final_answers_is_caught(text: str, caught: str) -> None:
    reason = hedged(text)
    assert reason is not None and caught in reason


@pytest.mark.parametrize(
    "text",
    [
        "48 + 24 = 72\n#### 72",
        "The answer is 72.\n#### 72",
        "Answer: 1/2, i.e. \\boxed{0.5}",
        "\\boxed{1,000} and so the final answer is 1000",
        "the answer is not obvious at first; 3 + 4 = 7\n#### 7",
        "no marker at all",
    ],
)
def test_one_final_answer_stated_once_or_repeated_is_not_hedging(text: str) -> None:
    assert hedged(text) is None


def test_a_hedged_trace_is_rejected_even_if_its_last_answer_is_gold() -> None:
    from synth_lib.engines.base import GenerationRequest, GenerationResult, SamplingParams
    from synth_lib.prompts import load_template
    from synth_lib.provenance.schema import RowContext
    from synth_lib.reasoning.cot import _trace_row
    from synth_lib.reasoning.tasks import Problem
    from tests.scripted_engine import ScriptedEngine

    seed_row = {"id": "p1", "root_seed_ids": ["s1"]}
    problem = Problem(seed_row, "What is 9 + 9?", "18", "gsm8k", "easy")
    text = "Nine and nine make eighteen, or maybe seventeen.\nAnswer: 17\nAnswer: 18"
    row, reason = _trace_row(
        problem,
        GenerationResult("p1:0", text, "stop"),
        request=GenerationRequest("p1:0", "q", SamplingParams()),
        template=load_template("reasoning_cot"),
        identity=ScriptedEngine(lambda r: "").identity,
        ctx=RowContext(run_id="test"),
        sample_index=0,
        rationalized=False,
        min_rationale_words=1,
    )
    assert reason == "hedged_answer" and row is not None and not row["correct"]
    failed = [v for v in row["verdicts"] if not v["passed"]]
    assert [v["name"] for v in failed] == ["single_final_answer"]
