import dataclasses

import pytest

from synth_lib.engines.base import (
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
)
from synth_lib.engines.cache import CachedEngine, ResponseCache
from tests.scripted_engine import ScriptedEngine


def _requests(n: int, seed: int = 0) -> list[GenerationRequest]:
    return [GenerationRequest(f"r{i}", f"prompt {i}", SamplingParams(), seed) for i in range(n)]


def test_second_pass_is_all_cache_hits(tmp_path):
    engine = ScriptedEngine(lambda r: r.prompt.upper())
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedEngine(engine, cache, chunk_size=3).generate(_requests(10))
    second_engine = CachedEngine(engine, cache, chunk_size=3)
    second = second_engine.generate(_requests(10))
    assert len(engine.seen) == 10
    assert second_engine.stats.cache_hits == 10 and second_engine.stats.engine_calls == 0
    assert [r.text for r in first] == [r.text for r in second]
    assert all(r.cached for r in second) and not any(r.cached for r in first)


def test_key_covers_seed_and_sampling(tmp_path):
    engine = ScriptedEngine(lambda r: "x")
    cached = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite"))
    cached.generate(_requests(2, seed=0))
    cached.generate(_requests(2, seed=1))
    cached.generate([GenerationRequest("a", "prompt 0", SamplingParams(temperature=0.0))])
    assert len(engine.seen) == 5


BASE_IDENTITY = ModelIdentity("vllm", "org/model", "rev-a")
BASE_REQUEST = GenerationRequest("r", "a prompt", SamplingParams(), 0, "be brief")


@pytest.mark.parametrize(
    ("identity", "request_"),
    [
        (dataclasses.replace(BASE_IDENTITY, backend="openai"), BASE_REQUEST),
        (dataclasses.replace(BASE_IDENTITY, model="org/other"), BASE_REQUEST),
        (dataclasses.replace(BASE_IDENTITY, revision="rev-b"), BASE_REQUEST),  # new weights
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, system="be verbose")),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, system=None)),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, prompt="a prompt!")),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, seed=1)),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, sampling=SamplingParams(top_p=0.5))),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, sampling=SamplingParams(max_tokens=9))),
        (BASE_IDENTITY, dataclasses.replace(BASE_REQUEST, sampling=SamplingParams(stop=("\n",)))),
    ],
    ids=["backend", "model", "revision", "system", "no-system", "prompt", "seed", "top_p",
         "max_tokens", "stop"],
)  # fmt: skip
def test_any_change_to_the_key_asks_the_engine_again(tmp_path, identity, request_):
    """A cache shared by two engines: the base answer must never be served for a variant."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    base = ScriptedEngine(lambda r: "stale")
    base.identity = BASE_IDENTITY
    CachedEngine(base, cache).generate([BASE_REQUEST])
    variant = ScriptedEngine(lambda r: "fresh")
    variant.identity = identity
    [answer] = CachedEngine(variant, cache).generate([request_])
    assert (answer.text, answer.cached, len(variant.seen)) == ("fresh", False, 1)
    same = ScriptedEngine(lambda r: "fresh")
    same.identity = BASE_IDENTITY
    [hit] = CachedEngine(same, cache).generate([BASE_REQUEST])
    assert (hit.text, hit.cached, same.seen) == ("stale", True, [])


def test_errors_are_not_cached_and_are_retried(tmp_path):
    calls = {"n": 0}

    def flaky(request):
        calls["n"] += 1
        if request.prompt == "prompt 3" and calls["n"] <= 5:
            return GenerationResult(request.request_id, "", "error", error="Timeout")
        return "ok"

    engine = ScriptedEngine(flaky)
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedEngine(engine, cache)
    results = first.generate(_requests(5))
    assert [r.finish_reason for r in results].count("error") == 1
    assert first.stats.failures == 1
    rerun = CachedEngine(engine, cache)
    again = rerun.generate(_requests(5))
    assert rerun.stats.engine_calls == 1 and all(r.ok for r in again)


def test_duplicate_prompts_in_one_batch_are_asked_once(tmp_path):
    engine = ScriptedEngine(lambda r: "same")
    cached = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite"))
    reqs = [GenerationRequest(f"id{i}", "one prompt") for i in range(4)]
    out = cached.generate(reqs)
    assert len(engine.seen) == 1 and [r.request_id for r in out] == ["id0", "id1", "id2", "id3"]
