"""Instructions: writing, Evol-Instruct evolution, the cheap checks, the judge, and personas."""

import re

import numpy as np
import pytest

from synth_lib.engines.base import GenerationRequest
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.text.evolution import clean_instruction, evolution_verdict
from synth_lib.text.instructions import (
    InstructionSettings,
    generate_instructions,
    persona_probe,
)
from synth_lib.text.personas import load_personas, parse_personas
from tests.scripted_engine import ScriptedEngine

CTX = RowContext("test-run")
PASSAGE = (
    "The for statement iterates over the elements of a sequence, such as a string, tuple or "
    "list, in the order that they appear. An else clause runs when the loop ends normally."
)
SEEDS = [
    make_row(
        stage="text_seeds",
        payload={"text": f"{PASSAGE} Example {n}."},
        ctx=CTX,
        source=Source("pydoc", f"topics:{n}", "PSF-2.0"),
    )
    for n in range(4)
]


def responder(
    answer: str = "The for statement iterates over each element of the sequence in order.",
    evolved: str = " Explain why the else clause runs, with a list example.",
    score: str = "Score: 8",
):
    def respond(request: GenerationRequest) -> str:
        prompt = request.prompt
        if "Rate how well" in prompt:
            return score
        if "Rewritten task:" in prompt:
            task = prompt.split("\nTask: ")[1].split("\n\nRewritten task:")[0]
            step = request.request_id.rsplit(":", 1)[1]
            return f"Rewritten task: {task}{evolved.replace('why', f'why (part {step})')}"
        if "Answer the task below" in prompt:
            return answer
        persona = re.search(r"The task is for (.+?)\.\n", prompt)
        who = persona.group(1) if persona else "a learner"
        example = prompt.split("Example ")[1].split(".")[0]
        return f"Task: Describe how the for statement loops over list {example}, for {who}."

    return respond


def test_rows_record_evolution_persona_and_judge():
    engine = ScriptedEngine(responder())
    personas = load_personas()
    out = generate_instructions(
        SEEDS, engine, CTX, personas=personas, settings=InstructionSettings(depth=2)
    )
    assert len(out.rows) == 4 and all(r["accepted"] for r in out.rows)
    row = out.rows[0]
    assert row["evol_depth"] == 2 and len(row["evolution"]) == 2
    assert set(row["evolution"]) <= {"deepen", "constrain", "concretize"}
    assert (
        row["prompt"].startswith("Describe how the for statement loops over list 0")
        and "else clause" in row["prompt"]
    )
    assert row["persona_set"] == personas.label and row["persona_id"]
    assert row["persona"] in row["seed_instruction"]
    names = [v["name"] for v in row["verdicts"]]
    assert names[:2] == [f"evolution_1_{row['evolution'][0]}", f"evolution_2_{row['evolution'][1]}"]
    assert names[-1] == "judge" and row["verdicts"][-1]["score"] == 8.0
    assert row["generator"]["template"] == "instruction_response"
    assert row["root_seed_ids"] == SEEDS[0]["root_seed_ids"]


def test_refusal_is_rejected_and_never_judged():
    engine = ScriptedEngine(responder(answer="I'm sorry, I cannot help with that."))
    out = generate_instructions(SEEDS[:2], engine, CTX, personas=None)
    assert [r["accepted"] for r in out.rows] == [False, False]
    assert out.rejection_reasons == {"refusal": 2}
    assert not any("Rate how well" in r.prompt for r in engine.seen)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Yes.", "too_short"),
        ("Bananas are yellow and grow in tropical climates near oceans.", "off_instruction"),
        (PASSAGE + " Example 0.", "near_copy_of_input"),
    ],
)
def test_cheap_checks_reject_bad_answers(answer, reason):
    out = generate_instructions(SEEDS[:1], ScriptedEngine(responder(answer=answer)), CTX,
                                personas=None)  # fmt: skip
    assert not out.rows[0]["accepted"]
    assert out.rejection_reasons == {reason: 1}


@pytest.mark.parametrize(("score", "reason"), [("Score: 3", "low_score"), ("hmm", "unparseable")])
def test_judge_gates_the_row(score, reason):
    out = generate_instructions(SEEDS[:1], ScriptedEngine(responder(score=score)), CTX,
                                personas=None)  # fmt: skip
    judge = out.rows[0]["verdicts"][-1]
    assert judge["name"] == "judge" and not judge["passed"] and reason in judge["reason"]
    assert not out.rows[0]["accepted"]


def test_failed_evolution_keeps_the_last_good_instruction():
    engine = ScriptedEngine(responder(evolved=""))  # the "evolution" copies the task
    out = generate_instructions(
        SEEDS[:1], engine, CTX, personas=None, settings=InstructionSettings(depth=3)
    )
    row = out.rows[0]
    assert row["evol_depth"] == 0 and row["prompt"] == row["seed_instruction"]
    assert row["accepted"]  # a failed evolution is not a failed row
    assert out.evolution_failures == {"no_change": 1}
    assert sum(1 for r in engine.seen if "Rewritten task:" in r.prompt) == 1  # stopped at once


def test_evolution_verdict_reasons():
    base = "Describe how the for statement loops over a list."
    assert evolution_verdict(1, "deepen", base, base + " Explain why, with an example.").passed
    assert evolution_verdict(1, "deepen", base, "Loop.").reason == "no_information_gain"
    assert evolution_verdict(1, "deepen", base, "#Rewritten Prompt#: do it").reason == "prompt_leak"
    assert clean_instruction('Rewritten task: "Sort the list."') == "Sort the list."


def test_persona_file_is_versioned_and_strict():
    personas = load_personas()
    assert len(personas.personas) >= 250
    assert len({p.id for p in personas.personas}) == len(personas.personas)
    assert personas.pick("seed-1", "instructions", 0) == personas.pick("seed-1", "instructions", 0)
    with pytest.raises(ValueError, match="line 3 repeats the persona on line 1"):
        parse_personas("p.txt", "a cook\n# comment\na cook\n")


def _bag_of_words(texts):
    vectors = np.zeros((len(texts), 256), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            vectors[i, hash(word) % 256] += 1.0
    return vectors


def test_persona_probe_measures_a_gain_on_the_same_seeds():
    engine = ScriptedEngine(responder())
    gain = persona_probe(SEEDS, engine, load_personas(), _bag_of_words, variants=2)
    assert gain["rows_with_personas"] == gain["rows_without_personas"] == 8
    assert gain["lost_with_personas"] == gain["lost_without_personas"] == {}
    assert gain["distinct_2_gain"] > 1.0 and gain["embedding_spread_gain"] > 1.0
    assert gain["within_seed_spread_without"] == 0.0 < gain["within_seed_spread_with"]
