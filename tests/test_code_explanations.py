"""Code explanations: kept only when they let the model predict the sandbox's real result."""

import inspect
import statistics

import pytest

from synth_lib.code.explanations import (
    TRIMMED,
    choose_functions,
    explain_code,
    outputs_match,
    pick_traces,
    stated_answer,
)
from synth_lib.engines.base import GenerationResult
from synth_lib.provenance.schema import RowContext, Source, make_row
from tests.scripted_engine import ScriptedEngine

CTX = RowContext("test-run")
CODE = make_row(
    stage="code_seeds",
    payload={"text": inspect.getsource(statistics.median), "name": "statistics.median",
             "module": "statistics"},
    ctx=CTX,
    source=Source("cpython-stdlib", "statistics.median", "PSF-2.0"),
)  # fmt: skip
TRACES = [
    make_row(
        stage="execution_traces",
        payload={"expression": expr, "response": response, "function": "statistics.median",
                 "outcome": outcome},
        ctx=CTX,
        parents=[CODE],
    )
    for expr, response, outcome in [
        ("statistics.median([3, 1, 2])", "2", "value"),
        ("statistics.median([])", "raises StatisticsError: no median for empty data", "exception"),
    ]
]  # fmt: skip
EXPLANATION = (
    "The function sorts the data, then returns the middle element when the count is odd, "
    "or the mean of the two middle elements when it is even. Empty data raises an error."
)


def engine_answering(prediction: str) -> ScriptedEngine:
    def respond(request):
        if "Using only this explanation" in request.prompt:
            assert "def median" not in request.prompt  # the predictor never sees the code
            return prediction
        return EXPLANATION

    return ScriptedEngine(respond)


def test_explanation_that_predicts_the_traced_call_is_kept():
    outcome = explain_code([CODE], TRACES, engine_answering("Answer: `2`"), CTX)
    row = outcome.rows[0]
    assert row["accepted"], row["verdicts"]
    assert row["expressions"] == ["statistics.median([3, 1, 2])"]  # value results first
    assert row["expected"] == ["2"] and row["predicted"] == ["2"]
    assert set(row["parent_ids"]) == {CODE["id"], TRACES[0]["id"]}
    assert row["response"] == EXPLANATION and "def median" in row["prompt"]


def test_wrong_predicted_output_is_rejected():
    outcome = explain_code([CODE], TRACES, engine_answering("3"), CTX)
    row = outcome.rows[0]
    assert not row["accepted"] and outcome.rejection_reasons == {"wrong_prediction": 1}
    assert "sandbox '2'" in row["verdicts"][-1]["reason"]


@pytest.mark.parametrize(
    ("copy", "reason"),
    [
        (CODE["text"], "no_prose"),  # code lines are not prose
        ("\n".join(ln.strip() for ln in CODE["text"].splitlines()), "near_copy_of_input"),
    ],
)
def test_copying_the_source_is_not_an_explanation(copy, reason):
    engine = ScriptedEngine(lambda request: copy)
    outcome = explain_code([CODE], TRACES, engine, CTX)
    assert outcome.rejection_reasons == {reason: 1}
    assert not any("Using only this explanation" in r.prompt for r in engine.seen)


def test_functions_without_traces_are_counted_not_explained():
    other = make_row(stage="code_seeds", payload={"text": "def f(): pass", "name": "m.f"}, ctx=CTX)
    outcome = explain_code([other], TRACES, engine_answering("2"), CTX)
    assert outcome.rows == [] and outcome.functions_without_traces == 1


def _trace(function: str, expression: str, response: str, outcome: str = "value") -> dict:
    payload = {
        "expression": expression,
        "response": response,
        "function": function,
        "outcome": outcome,
    }
    return make_row(stage="execution_traces", payload=payload, ctx=CTX)  # fmt: skip


def _seed(name: str, text: str) -> dict:
    return make_row(stage="code_seeds", payload={"text": text, "name": name}, ctx=CTX)


def test_the_easiest_call_is_asked_not_an_echo_or_a_long_result():
    calls = [
        _trace("s.f", "s.f('abc')", "'abc'"),  # the argument echoed back: guessable blind
        _trace("s.f", "s.f('ab cd')", "['ab', 'cd', 'ab cd', 'cd ab']"),
        _trace("s.f", "s.f('x y')", "['x', 'y']"),
        _trace("s.f", "s.f(1)", "raises TypeError: no", "exception"),
    ]
    [(_, picked)] = pick_traces([_seed("s.f", "def f(): ...")], calls, 2, seed=0)
    assert [c["expression"] for c in picked] == ["s.f('x y')", "s.f('ab cd')"]


def test_a_function_whose_calls_all_echo_their_argument_is_not_asked():
    echo = _seed("m.echo", "def echo(s): return s.strip()")
    calls = [_trace("m.echo", "m.echo('')", "''"), _trace("m.echo", "m.echo('a')", "'a'")]
    assert choose_functions([echo], calls, 0) == []
    outcome = explain_code([echo], calls, engine_answering("''"), CTX)
    assert outcome.rows == [] and outcome.functions_without_traces == 1


def test_short_functions_with_easy_calls_are_explained_first():
    seeds = [
        _seed("m.long", "x" * 2000),
        _seed("m.hard", "y" * 300),
        _seed("m.easy", "z" * 400),
        _seed("m.untraced", "w" * 100),
    ]
    calls = [
        _trace("m.long", "m.long(1)", "2"),
        _trace("m.hard", "m.hard(1)", "[1, 2, 3, 4, 5]"),
        _trace("m.easy", "m.easy(1)", "2"),
    ]
    assert [c["name"] for c in choose_functions(seeds, calls, 2)] == ["m.easy", "m.hard"]
    assert [c["name"] for c in choose_functions(seeds, calls, 0)][-1] == "m.long"


def _scripted(explanation: GenerationResult | str, prediction: GenerationResult | str):
    def respond(request):
        return prediction if "Using only this explanation" in request.prompt else explanation

    return ScriptedEngine(respond)


def _cut(text: str) -> GenerationResult:
    return GenerationResult("x", text, "length", completion_tokens=256)


def test_an_explanation_cut_at_the_budget_is_trimmed_and_still_judged():
    cut = _cut(EXPLANATION + " When the count is even, the two mid")
    kept = explain_code([CODE], TRACES, _scripted(cut, "2"), CTX).rows[0]
    assert kept["accepted"] and kept["response"] == EXPLANATION
    assert kept["verdicts"][0] == {"name": "generation", "passed": True, "score": None,
                                   "reason": TRIMMED}  # fmt: skip
    wrong = explain_code([CODE], TRACES, _scripted(cut, "3"), CTX)
    assert not wrong.rows[0]["accepted"] and wrong.rejection_reasons == {"wrong_prediction": 1}


def test_a_cut_explanation_without_a_full_sentence_is_rejected_unjudged():
    engine = _scripted(_cut("The function sorts the data and then"), "2")
    outcome = explain_code([CODE], TRACES, engine, CTX)
    assert outcome.rejection_reasons == {"truncated": 1}
    assert not any("Using only this explanation" in r.prompt for r in engine.seen)


def test_code_blocks_are_dropped_and_code_alone_is_no_explanation():
    fenced = f"{EXPLANATION}\n\n```python\nreturn sorted(data)[len(data) // 2]\n```"
    engine = _scripted(fenced, "2")
    row = explain_code([CODE], TRACES, engine, CTX).rows[0]
    assert row["accepted"] and row["response"] == EXPLANATION
    assert all("sorted(data)" not in r.prompt for r in engine.seen if "Using only" in r.prompt)
    code_only = explain_code([CODE], TRACES, _scripted("```python\nreturn 2\n```", "2"), CTX)
    assert code_only.rejection_reasons == {"no_prose": 1}
    unfenced = 'def median(data):\n    """Return the median (middle value) of numeric data."""'
    pseudo = explain_code([CODE], TRACES, _scripted(unfenced, "2"), CTX)
    assert pseudo.rejection_reasons == {"no_prose": 1}


@pytest.mark.parametrize(
    ("prediction", "accepted"),
    [("2\nBecause the middle element of [1, 2, 3] is", True), ("2 because the middle", False)],
)
def test_a_prediction_cut_at_the_budget_counts_only_if_its_line_ended(prediction, accepted):
    engine = _scripted(EXPLANATION, GenerationResult("x", prediction, "length"))
    assert explain_code([CODE], TRACES, engine, CTX).rows[0]["accepted"] is accepted


@pytest.mark.parametrize(
    ("text", "cut", "answer"),
    [
        ("`True`\nBecause '*' matches anything.", False, "True"),
        ("The call `f('dir/', '*')` returns `True` because '*' matches.", False, "True"),
        ("It raises a `StatisticsError` since the data is empty.", False, "raises StatisticsError"),
        ("It returns (1, 30). So it returns (1, 30).", False, "(1, 30)"),
        ("It returns `True` if the name matches.", False, "It returns `True` if the name matches."),
        ("It returns True, or False otherwise.", False, "It returns True, or False otherwise."),
        ("It returns 1. Then it returns 2.", False, "It returns 1. Then it returns 2."),
        ("It returns 15", True, ""),  # the value runs into the cut: maybe 150
        ("It returns 1 and the mid", True, "1"),
    ],
)
def test_the_stated_answer_is_one_unconditional_value(text, cut, answer):
    assert stated_answer(text, cut) == answer


def test_a_sentence_stating_a_wrong_value_is_rejected():
    engine = engine_answering("The function `statistics.median` returns `3` for this list.")
    outcome = explain_code([CODE], TRACES, engine, CTX)
    assert outcome.rejection_reasons == {"wrong_prediction": 1}
    assert explain_code([CODE], TRACES, engine_answering("It returns `2`."), CTX).rows[0][
        "accepted"
    ]


@pytest.mark.parametrize(
    ("predicted", "expected", "same"),
    [
        ("'ab'", '"ab"', True),
        ("[1, 2]", "[1,2]", True),
        ("raises StatisticsError", "raises StatisticsError: no median for empty data", True),
        ("raises statistics.StatisticsError: x", "raises StatisticsError: y", True),
        ("raises ValueError", "raises StatisticsError: y", False),
        ("2", "raises StatisticsError: y", False),
        ("2.0", "2", True),
        ("two", "2", False),
    ],
)
def test_outputs_match(predicted, expected, same):
    assert outputs_match(predicted, expected) is same
