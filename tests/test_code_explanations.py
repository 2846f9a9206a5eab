"""Code explanations: kept only when they let the model predict the sandbox's real result."""

import inspect
import statistics

import pytest

from synth_lib.code.explanations import explain_code, outputs_match
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


def test_copying_the_source_is_not_an_explanation():
    engine = ScriptedEngine(lambda request: CODE["text"])
    outcome = explain_code([CODE], TRACES, engine, CTX)
    assert outcome.rejection_reasons == {"near_copy_of_input": 1}
    assert not any("Using only this explanation" in r.prompt for r in engine.seen)


def test_functions_without_traces_are_counted_not_explained():
    other = make_row(stage="code_seeds", payload={"text": "def f(): pass", "name": "m.f"}, ctx=CTX)
    outcome = explain_code([other], TRACES, engine_answering("2"), CTX)
    assert outcome.rows == [] and outcome.functions_without_traces == 1


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
