from synth_lib.engines.base import GenerationRequest, GenerationResult, SamplingParams
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
