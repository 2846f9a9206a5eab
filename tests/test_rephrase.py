from synth_lib.engines.base import GenerationResult
from synth_lib.engines.output_checks import generation_verdict
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.text.rephrase import rephrase
from tests.scripted_engine import ScriptedEngine

SEED_TEXT = (
    "The for statement is used to iterate over the elements of a sequence such as a string, "
    "tuple or list, or other iterable object, executing the suite once per item."
)


def _seed_args():
    return {
        "stage": "text_seeds",
        "payload": {"text": SEED_TEXT, "title": "for"},
        "ctx": RowContext("r"),
        "source": Source("ref", "loc", "PSF-2.0"),
    }


def _seed():
    return make_row(**_seed_args())


def _responder(request):
    style = request.request_id.rsplit(":", 1)[1]
    if style == "easy":
        return "A for statement goes over each item of a list, string or tuple, one by one."
    if style == "hard":
        return GenerationResult(request.request_id, "Iteration proceeds", "length")
    if style == "wikipedia":
        return SEED_TEXT
    return "I'm sorry, but I can't help with that."


def test_each_style_checked_with_its_reason():
    outcome = rephrase([_seed()], ScriptedEngine(_responder), RowContext("run"))
    by_style = {r["style"]: r for r in outcome.rows}
    assert by_style["easy"]["accepted"] is True
    assert "hard" not in by_style, "a truncated response must never become a row"
    assert by_style["wikipedia"]["verdicts"][-1]["reason"] == "near_copy_of_input"
    assert by_style["qa"]["verdicts"][0]["reason"] == "refusal"
    assert dict(outcome.rejection_reasons) == {
        "truncated": 1,
        "near_copy_of_input": 1,
        "refusal": 1,
    }
    easy = by_style["easy"]
    assert easy["parent_ids"] == [_seed()["id"]]
    assert easy["root_seed_ids"] == [_seed()["id"]]
    assert easy["generator"]["template"] == "rephrase_easy"
    assert easy["generator"]["template_hash"] == load_template("rephrase_easy").hash
    assert easy["is_synthetic"] is True


def test_generation_verdicts():
    ok = GenerationResult("a", "fine text", "stop")
    assert generation_verdict(ok).passed
    assert generation_verdict(GenerationResult("a", "", "stop")).reason == "empty"
    assert (
        generation_verdict(GenerationResult("a", "x", "content_filter")).reason == "content_filter"
    )
    err = GenerationResult("a", "", "error", error="HTTP 500")
    assert generation_verdict(err).reason == "engine_error: HTTP 500"


OTHER_TEXT = (
    "The while statement is used for repeated execution as long as an expression is true; "
    "a break statement executed in the first suite terminates the loop."
)
CANNED = "Sure! Here is a clear and simple paraphrase of the paragraph you gave me."


def test_content_gate_rejects_unrelated_and_canned_rewrites():
    seeds = [_seed(), make_row(**{**_seed_args(), "payload": {"text": OTHER_TEXT}})]

    def responder(request):
        if request.request_id.endswith(":easy"):
            return CANNED  # the same text for both passages
        if OTHER_TEXT in request.prompt:
            return "The while statement repeats its suite as long as its expression is true."
        return "Bananas are yellow fruits that grow in warm countries and taste sweet."

    outcome = rephrase(seeds, ScriptedEngine(responder), RowContext("run"), styles=["easy", "qa"])
    failed = {
        (r["parent_ids"][0], r["style"]): [v for v in r["verdicts"] if not v["passed"]]
        for r in outcome.rows
    }
    for seed in seeds:
        assert failed[(seed["id"], "easy")][0]["name"] == "canned_answer"
    assert failed[(seeds[0]["id"], "qa")][0]["reason"].startswith("unrelated_to_passage")
    assert failed[(seeds[1]["id"], "qa")] == []
    assert outcome.rejection_reasons["same_text_for_other_passages"] == 2
    assert outcome.rejection_reasons["unrelated_to_passage"] == 1
