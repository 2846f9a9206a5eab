"""Constrained choices: the token trie, the transformers engine, the backends' parameter
mapping, the judges asking for them, and cache keys of unconstrained requests unchanged."""

from __future__ import annotations

import pytest

from synth_lib.engines.base import GenerationRequest, ModelIdentity, SamplingParams, cache_key
from synth_lib.engines.constraints import ChoiceTrie
from synth_lib.engines.openai_engine import OpenAIConfig, build_body
from synth_lib.engines.vllm_engine import VllmConfig, sampling_kwargs
from synth_lib.provenance.schema import RowContext
from synth_lib.reasoning.debate import DECISION_CHOICES, DebateItem, run_debates
from synth_lib.reasoning.judge import PAIRWISE_CHOICES, SCORE_CHOICES, Comparison, Judge
from synth_lib.text.instructions import InstructionSettings, generate_instructions
from tests import test_instructions, test_reasoning_debate
from tests.scripted_engine import ScriptedEngine

END = 99


def test_trie_walks_shared_prefixes_and_ends_only_on_a_whole_choice():
    trie = ChoiceTrie([[1, 2], [1, 2, 3], [4]], end_ids=[END])
    assert sorted(trie.allowed([])) == [1, 4]
    assert trie.allowed([1]) == [2]
    assert sorted(trie.allowed([1, 2])) == [3, END]  # "12" is a choice and a prefix of "123"
    assert trie.allowed([1, 2, 3]) == [END]
    assert trie.allowed([7]) == [END]  # off the trie (a finished, padded row): end only
    assert trie.longest == 3


def test_choices_must_be_distinct_and_non_empty():
    with pytest.raises(ValueError):
        SamplingParams(choices=("a", "a"))
    with pytest.raises(ValueError):
        SamplingParams(choices=("a", ""))


def test_unconstrained_sampling_and_cache_keys_are_what_they_were():
    """Literals computed with the SamplingParams that had no `choices` field."""
    sampling = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=17, stop=("END",))
    assert sampling.to_json() == '{"max_tokens":17,"stop":["END"],"temperature":0.3,"top_p":0.9}'
    assert SamplingParams().to_json() == (
        '{"max_tokens":128,"stop":[],"temperature":0.8,"top_p":0.95}'
    )
    request = GenerationRequest("r1", "Say hi.", sampling, seed=7, system="Be brief.")
    key = cache_key(ModelIdentity("transformers", "m", "rev"), request)
    assert key == "4661ccb152b92b5041112cb47f18ca1e711b73a3fd1a9103749f644391bec690"
    constrained = GenerationRequest(
        "r1", "Say hi.", SamplingParams(0.3, 0.9, 17, ("END",), ("yes", "no")), 7, "Be brief."
    )
    assert cache_key(ModelIdentity("transformers", "m", "rev"), constrained) != key
    assert '"choices":["yes","no"]' in constrained.sampling.to_json()


@pytest.fixture(scope="module")
def smoke_engine(smoke_models_dir):
    from synth_lib.engines.tiny_model import ensure_smoke_model
    from synth_lib.engines.transformers_engine import TransformersEngine

    return TransformersEngine(ensure_smoke_model(smoke_models_dir), batch_size=8)


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_smoke_model_always_answers_one_of_the_choices(smoke_engine, temperature):
    choices = ("Score: 1", "Score: 10", "Verdict: tie", "Decision: ACCEPT")
    sampling = SamplingParams(temperature=temperature, top_p=1.0, max_tokens=64, choices=choices)
    requests = [
        GenerationRequest(f"r{i}", f"Judge item {i}: {'long context ' * (i % 4)}", sampling, i)
        for i in range(16)
    ]
    results = smoke_engine.generate(requests)
    assert all(r.ok for r in results), [r.error for r in results]
    assert all(r.text in choices for r in results), [r.text for r in results]
    longest = max(len(smoke_engine.tokenizer.encode(c, add_special_tokens=False)) for c in choices)
    assert all(r.completion_tokens <= longest + 1 for r in results)
    if temperature:  # sampling draws different choices for different seeds
        assert len({r.text for r in results}) > 1


def test_smoke_model_without_choices_is_unconstrained(smoke_engine):
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=16)
    results = smoke_engine.generate(
        [GenerationRequest(f"r{i}", f"Judge item {i}", sampling, i) for i in range(4)]
    )
    assert not any(r.text in ("Score: 1", "Score: 10") for r in results)
    assert max(r.completion_tokens for r in results) > 6


def test_vllm_maps_choices_to_structured_outputs():
    choices = SamplingParams(temperature=0.0, choices=("Verdict: A", "Verdict: B"))
    kw = sampling_kwargs(GenerationRequest("a", "x", choices), VllmConfig(model="m"))
    assert kw["structured_outputs"] == {"choice": ["Verdict: A", "Verdict: B"]}
    built = sampling_kwargs(
        GenerationRequest("a", "x", choices), VllmConfig(model="m"), lambda **k: ("made", k)
    )
    assert built["structured_outputs"] == ("made", {"choice": ["Verdict: A", "Verdict: B"]})
    assert "structured_outputs" not in sampling_kwargs(
        GenerationRequest("b", "y"), VllmConfig(model="m")
    )


def test_openai_sends_choices_only_where_the_server_takes_them():
    request = GenerationRequest("a", "x", SamplingParams(choices=("Score: 1", "Score: 2")))
    plain = build_body(OpenAIConfig(base_url="http://s", model="m"), request)
    assert "guided_choice" not in plain and "structured_outputs" not in plain
    new = build_body(
        OpenAIConfig(base_url="http://s", model="m", choice_param="structured_outputs"), request
    )
    assert new["structured_outputs"] == {"choice": ["Score: 1", "Score: 2"]}
    old = build_body(
        OpenAIConfig(base_url="http://s", model="m", choice_param="guided_choice"), request
    )
    assert old["guided_choice"] == ["Score: 1", "Score: 2"]
    unconstrained = build_body(
        OpenAIConfig(base_url="http://s", model="m", choice_param="guided_choice"),
        GenerationRequest("b", "y"),
    )
    assert "guided_choice" not in unconstrained
    with pytest.raises(ValueError):
        OpenAIConfig(base_url="http://s", model="m", choice_param="grammar")


def test_instruction_judge_asks_for_a_score_choice():
    engine = ScriptedEngine(test_instructions.responder())
    out = generate_instructions(
        test_instructions.SEEDS,
        engine,
        RowContext("test-run"),
        personas=None,
        settings=InstructionSettings(depth=1),
    )
    judged = [r for r in engine.seen if r.request_id.endswith(":score")]
    assert judged and all(r.sampling.choices == SCORE_CHOICES for r in judged)
    assert all(not r.sampling.choices for r in engine.seen if r not in judged)
    assert all(row["accepted"] for row in out.rows)


def test_pairwise_judge_asks_for_a_verdict_choice_unless_unconstrained():
    comparison = Comparison("k", "Add 2 and 2.", "It is 4.", "It is 5.")
    engine = ScriptedEngine(lambda r: "Verdict: A" if "It is 4." in r.prompt[-400:] else "B")
    Judge(engine).compare([comparison])
    assert [r.sampling.choices for r in engine.seen] == [PAIRWISE_CHOICES] * 2
    assert Judge(engine).generator().sampling == engine.seen[0].sampling.to_json()
    free = ScriptedEngine(lambda r: "Verdict: A")
    Judge(free, constrained=False).compare([comparison])
    assert [r.sampling.choices for r in free.seen] == [(), ()]


def test_debate_judge_asks_for_a_decision_choice():
    item = DebateItem("The rewrite is faithful.", "faithful rewrite", test_reasoning_debate.SEED)
    engine = ScriptedEngine(test_reasoning_debate.responder)
    (outcome,) = run_debates([item], engine, rounds=1)
    judged = [r for r in engine.seen if r.request_id.endswith((":po", ":op"))]
    assert [r.sampling.choices for r in judged] == [DECISION_CHOICES] * 2
    assert all(not r.sampling.choices for r in engine.seen if r not in judged)
    assert outcome.reason == "judge_accepted"
