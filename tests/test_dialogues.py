"""Dialogues: turn-by-turn writing, the dropped tail, role order, turn count, repeats, topic."""

import json
import re

import numpy as np
import pytest

from synth_lib.engines.base import GenerationResult
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.text.dialogues import (
    DialogueSettings,
    content_verdict,
    generate_dialogues,
    role_verdict,
    turn_sampling,
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
QUESTIONS = [
    "What does the for statement iterate over?",
    "When does the else clause of a loop run?",
    "Which order does the for loop follow?",
]
ANSWERS = [
    "Over the elements of a sequence, such as a list, in order.",
    "When the loop ends normally, without break.",
    "The order in which the elements appear in the sequence.",
]
PIZZA = [
    "What is the best pizza topping?",
    "Mushrooms and fresh basil on tomato.",
    "And the best cheese for a pizza?",
    "Mozzarella melts best of all cheeses.",
]
TRUNCATED = GenerationResult("", "The elements of a sequence such as", "length", 5, 96)


def words_embedder(texts):
    """Bag of words over a fixed vocabulary: shares words = shares direction."""
    corpus = (PASSAGE, *QUESTIONS, *ANSWERS, *PIZZA)
    vocab = sorted({w for t in corpus for w in t.lower().split()})
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), len(vocab) + 1), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, index.get(word, len(vocab))] += 1.0
    return out


def turn_of(prompt: str) -> tuple[str, int]:
    """Which role a prompt asks for, and which exchange (0-based) it is."""
    if prompt.startswith("Write a question"):
        asked = re.search(r"already asked: (.+)\.\n", prompt)
        return "user", asked.group(1).count('"') // 2 if asked else 0
    return "assistant", prompt.count("\nAnswer: ")


def scripted(questions=QUESTIONS, answers=ANSWERS):
    def respond(request):
        role, turn = turn_of(request.prompt)
        replies = questions if role == "user" else answers
        reply = replies[turn]
        if isinstance(reply, GenerationResult):
            return GenerationResult("", reply.text, reply.finish_reason, 5, reply.completion_tokens)
        return reply

    return ScriptedEngine(respond)


def run(engine, seeds=(SEED,), **settings):
    return generate_dialogues(
        list(seeds), engine, CTX, words_embedder, personas=load_personas(),
        settings=DialogueSettings(**{"requested_turns": (2,), **settings}),
    )  # fmt: skip


def test_a_good_conversation_is_kept_in_trl_format():
    engine = scripted()
    outcome = run(engine)
    row = outcome.rows[0]
    assert row["accepted"], row["verdicts"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    assert row["messages"][0] == {"role": "user", "content": QUESTIONS[0]}
    assert row["messages"][3] == {"role": "assistant", "content": ANSWERS[1]}
    assert row["turns"] == 2 and row["persona_id"] and row["persona_set"].startswith("personas_v1@")
    assert [v["name"] for v in row["verdicts"]] == [
        "generation", "role_order", "turn_count", "turn_content", "on_topic"
    ]  # fmt: skip
    assert len(engine.seen) == 4  # user, assistant, user, assistant
    assert row["persona"] in engine.seen[0].prompt
    assert row["completion_tokens"] == sum(len(t.split()) for t in (*QUESTIONS[:2], *ANSWERS[:2]))
    sampling = json.loads(row["generator"]["sampling"])
    assert sampling["user"]["max_tokens"] == 48 and "\n\n" in sampling["assistant"]["stop"]


def test_follow_ups_see_the_conversation_and_start_differently():
    engine = scripted()
    run(engine, requested_turns=(3,))
    user = [r.prompt for r in engine.seen if r.prompt.startswith("Write a question")]
    openers = [re.search(r'Start the question with "(\w+)"', p).group(1) for p in user]
    assert len(set(openers)) == 3
    assert "already asked" not in user[0]
    assert f'already asked: "{QUESTIONS[0]}"; "{QUESTIONS[1]}".' in user[2]
    last_answer = [r.prompt for r in engine.seen if r.prompt.startswith("Answer")][-1]
    assert f"Question: {QUESTIONS[0]}\nAnswer: {ANSWERS[0]}\n" in last_answer
    assert last_answer.rstrip().endswith(f"Question: {QUESTIONS[2]}\n\nAnswer:")


def test_each_turn_is_one_batch_across_seeds():
    other = make_row(
        stage="text_seeds", payload={"text": PASSAGE + " Loops nest."}, ctx=CTX,
        source=Source("pydoc", "loops", "PSF"),
    )  # fmt: skip
    engine = scripted()
    batches = []
    generate = engine.generate
    engine.generate = lambda requests: batches.append(len(requests)) or generate(requests)
    outcome = run(engine, seeds=(SEED, other))
    assert batches == [2, 2, 2, 2] and len(outcome.rows) == 2


def test_a_cut_tail_is_dropped_and_the_complete_exchanges_kept():
    outcome = run(scripted(questions=[*QUESTIONS[:2], TRUNCATED]), requested_turns=(3,))
    row = outcome.rows[0]
    assert row["accepted"], row["verdicts"]
    assert row["turns"] == 2 and row["requested_turns"] == 3
    assert [m["content"] for m in row["messages"]] == [
        QUESTIONS[0], ANSWERS[0], QUESTIONS[1], ANSWERS[1]
    ]  # fmt: skip
    tail = next(v for v in row["verdicts"] if v["name"] == "tail_dropped")
    assert tail["passed"] and tail["score"] == 2.0 and tail["reason"] == "turn 3 user: truncated"
    assert outcome.tails_dropped == {"truncated": 1}


def test_an_unanswered_question_goes_with_the_cut_answer():
    outcome = run(scripted(answers=[*ANSWERS[:2], TRUNCATED]), requested_turns=(3,))
    row = outcome.rows[0]
    assert row["accepted"] and [m["role"] for m in row["messages"]][-1] == "assistant"
    assert len(row["messages"]) == 4
    assert "turn 3 assistant: truncated" in [v["reason"] for v in row["verdicts"]]


def test_a_salvaged_part_still_faces_every_gate():
    short = run(scripted(answers=[ANSWERS[0], TRUNCATED]))
    row = short.rows[0]
    assert not row["accepted"] and short.rejection_reasons == {"turns_outside_2_6": 1}
    assert row["turns"] == 1
    repeated = run(scripted(questions=[QUESTIONS[0], QUESTIONS[0]]))
    assert repeated.tails_dropped == {"repeated_turn": 1}
    assert repeated.rejection_reasons == {"turns_outside_2_6": 1}


def test_a_repeated_or_unfinished_turn_ends_the_talk_like_a_cut_one():
    engine = scripted(questions=[*QUESTIONS[:2], QUESTIONS[0].upper()])
    row = run(engine, requested_turns=(4,)).rows[0]
    assert row["accepted"] and row["turns"] == 2
    assert "turn 3 user: repeated_turn" in [v["reason"] for v in row["verdicts"]]
    assert len(engine.seen) == 5  # no answer to the repeat, no fourth exchange
    unfinished = [*ANSWERS[:2], "The order of the elements is as follows:"]
    outcome = run(scripted(answers=unfinished), requested_turns=(3,))
    assert outcome.rows[0]["accepted"] and outcome.tails_dropped == {"unfinished_turn": 1}
    assert [m["content"] for m in outcome.rows[0]["messages"]][-1] == ANSWERS[1]


def test_nothing_is_kept_without_a_complete_exchange():
    outcome = run(scripted(questions=[TRUNCATED]))
    assert outcome.rows == [] and outcome.lost == {"truncated": 1}
    outcome = run(scripted(answers=[TRUNCATED]))
    assert outcome.rows == [] and outcome.lost == {"truncated": 1}


def test_labels_are_stripped_and_a_multi_line_question_ends_the_talk():
    labelled = ["Question: " + QUESTIONS[0], "User: " + QUESTIONS[1]]
    row = run(scripted(questions=labelled)).rows[0]
    assert [m["content"] for m in row["messages"]][::2] == QUESTIONS[:2]
    rambling = [QUESTIONS[0], QUESTIONS[1] + "\nThe else clause runs at the end."]
    outcome = run(scripted(questions=rambling))
    assert outcome.tails_dropped == {"question_not_one_line": 1}
    assert outcome.rejection_reasons == {"turns_outside_2_6": 1}


def test_bad_role_order_is_rejected():
    user, assistant = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}
    assert role_verdict([user, user, assistant]).reason == "user_after_user"
    assert role_verdict([user, assistant, assistant]).reason == "assistant_after_assistant"
    assert role_verdict([assistant, user, assistant]).reason == "starts_with_assistant"
    assert role_verdict([user, assistant, user]).reason == "ends_with_user"
    assert role_verdict([]).reason == "no_messages"
    assert role_verdict([{"role": "system", "content": "be brief"}, user, assistant]).passed


def test_off_topic_conversation_is_rejected():
    outcome = run(scripted(questions=PIZZA[::2], answers=PIZZA[1::2]))
    row = outcome.rows[0]
    assert not row["accepted"] and outcome.rejection_reasons == {"off_topic": 1}
    topic = row["verdicts"][-1]
    assert topic["name"] == "on_topic" and topic["score"] < 0.3
    good = run(scripted())
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
        (
            [
                {"role": "user", "content": "What does the for loop return?"},
                {"role": "assistant", "content": "The output of the loop is:"},
            ],
            "unfinished_turn",
        ),
    ],
)
def test_empty_repeated_or_unfinished_turns_are_rejected(messages, reason):
    assert content_verdict(messages).reason == reason


def test_turn_count_outside_the_range_is_rejected():
    outcome = run(scripted(), requested_turns=(1,))
    assert outcome.rejection_reasons == {"turns_outside_2_6": 1}


def test_multi_paragraph_answers_stop_only_at_role_labels():
    answer = "First, the element counts.\n\nThen the slice is taken from it."
    engine = scripted(answers=[answer, ANSWERS[1]])
    outcome = run(engine, answer=turn_sampling(0.3, 96, paragraphs=True))
    asked = [r for r in engine.seen if turn_of(r.prompt)[0] == "assistant"]
    assert asked and all("\n\n" not in r.sampling.stop for r in asked)
    assert all("\nUser:" in r.sampling.stop for r in asked)
    assert outcome.rows[0]["messages"][1]["content"] == answer
    assert "\n\n" in turn_sampling(0.3, 96).stop
