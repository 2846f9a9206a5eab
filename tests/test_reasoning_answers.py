"""Final-answer extraction and equivalence: the edge cases that decide which traces are kept."""

from __future__ import annotations

import random

import pytest

from synth_lib.reasoning.answers import answers_match, extract_answer, normalize_answer


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
