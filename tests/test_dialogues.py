"""Dialogues: transcript parsing, role order, turn count, repeats, topic, personas."""

import numpy as np
import pytest

from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.text.dialogues import (
    DialogueSettings,
    content_verdict,
    generate_dialogues,
    parse_transcript,
    role_verdict,
)
from synth_lib.text.personas import load_personas
from tests.scripted_engine import ScriptedEngine

CTX = RowContext("test-run")
PASSAGE = (
    "The for statement iterates over the elements of a sequence such as a string tuple or "
    "list in the order that they appear; an else clause runs when the loop ends normally."
)
SEED = make_row(
    stage="text_seeds", payload={"text": PASSAGE}, ctx=CTX, source=Source("pydoc", "for", "PSF")
)
GOOD = (
    " What does the for statement iterate over?\n"
    "Assistant: Over the elements of a sequence, such as a list, in order.\n"
    "User: When does the else clause of a loop run?\n"
    "Assistant: When the loop ends normally, without break.\n"
)
OFF_TOPIC = (
    " What is the best pizza topping?\nAssistant: Mushrooms and fresh basil on tomato.\n"
    "User: And the best cheese for a pizza?\nAssistant: Mozzarella melts best of all cheeses.\n"
)


def words_embedder(texts):
    """Bag of words over a fixed vocabulary: shares words = shares direction."""
    vocab = sorted({w for t in (PASSAGE, GOOD, OFF_TOPIC) for w in t.lower().split()})
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), len(vocab) + 1), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, index.get(word, len(vocab))] += 1.0
    return out


def run(reply: str, **settings):
    engine = ScriptedEngine(lambda request: reply)
    outcome = generate_dialogues(
        [SEED], engine, CTX, words_embedder, personas=load_personas(),
        settings=DialogueSettings(**settings),
    )  # fmt: skip
    return outcome, engine


def test_a_good_conversation_is_kept_in_trl_format():
    outcome, engine = run(GOOD)
    row = outcome.rows[0]
    assert row["accepted"], row["verdicts"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    assert row["messages"][0] == {
        "role": "user", "content": "What does the for statement iterate over?"
    }  # fmt: skip
    assert row["turns"] == 2 and row["persona_id"] and row["persona_set"].startswith("personas_v1@")
    assert row["persona"] in engine.seen[0].prompt
    assert [v["name"] for v in row["verdicts"]] == [
        "generation", "role_order", "turn_count", "turn_content", "on_topic"
    ]  # fmt: skip


def test_bad_role_order_is_rejected():
    bad = " What is a for loop?\nUser: Hello?\nAssistant: It iterates over a sequence in order.\n"
    outcome, _ = run(bad + "User: And else?\nAssistant: It runs when the loop ends normally.")
    assert not outcome.rows[0]["accepted"]
    assert outcome.rejection_reasons == {"user_after_user": 1}
    assert role_verdict([{"role": "assistant", "content": "hi"}]).reason == "starts_with_assistant"
    assert role_verdict(parse_transcript("Assistant: hi", primed_role=None)).passed is False


def test_off_topic_conversation_is_rejected():
    outcome, _ = run(OFF_TOPIC)
    row = outcome.rows[0]
    assert not row["accepted"] and outcome.rejection_reasons == {"off_topic": 1}
    topic = row["verdicts"][-1]
    assert topic["name"] == "on_topic" and topic["score"] < 0.3
    good, _ = run(GOOD)
    assert good.rows[0]["verdicts"][-1]["score"] > 0.5


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (
            [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "  "}],
            "empty_turn",
        ),
        (
            [
                {"role": "user", "content": "What does the for loop do?"},
                {"role": "assistant", "content": "It iterates over a sequence."},
                {"role": "user", "content": "What does the for loop do?"},
                {"role": "assistant", "content": "It iterates over a sequence."},
            ],
            "repeated_turn",
        ),
    ],
)
def test_empty_or_repeated_turns_are_rejected(messages, reason):
    assert content_verdict(messages).reason == reason


def test_turn_count_outside_the_range_is_rejected():
    one = " What does for iterate over?\nAssistant: The elements of a sequence, in order.\n"
    outcome, _ = run(one)
    assert outcome.rejection_reasons == {"turns_outside_2_6": 1}


def test_an_unanswered_last_user_turn_is_dropped():
    messages = parse_transcript(GOOD + "User: One more question")
    assert [m["role"] for m in messages][-1] == "assistant" and len(messages) == 4
