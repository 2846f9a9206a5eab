"""Engines that distrust their servers: one bad answer costs one row, never a stage.

Every behaviour of `tests/hostile_server.py` goes through `CachedEngine(OpenAIEngine)`
with a real `ResponseCache` on disk, then the result is written the way a stage writes
it (a Polars frame of the text, a failure row frame), so "the stage would have died" is
tested, not assumed. What reached the server is counted there.
"""

from __future__ import annotations

import json
import sqlite3
import time
import tracemalloc
from dataclasses import asdict

import polars as pl
import pytest

from synth_lib.engines.base import GenerationRequest, GenerationResult, SamplingParams, cache_key
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.failures import FAILURE_COLUMNS, failure_metadata
from synth_lib.engines.openai_engine import OpenAIConfig, OpenAIEngine, served_model_matches
from tests.hostile_server import MIB, HostileServer
from tests.scripted_engine import ScriptedEngine

_POLARS = {str: pl.Utf8, int: pl.Int64, bool: pl.Boolean}


@pytest.fixture(scope="module")
def server():
    with HostileServer(huge_bytes=30 * MIB, trickle_interval_s=0.05) as srv:
        yield srv


def engine_for(url: str, **overrides) -> OpenAIEngine:
    config = {
        "base_url": url,
        "model": "test-model",
        "max_attempts": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        "request_timeout_s": 0.5,
        "request_budget_s": 2.0,
    }
    return OpenAIEngine(OpenAIConfig(**{**config, **overrides}), seed=0)


def ask(server, tmp_path, prompt: str, **overrides) -> tuple[GenerationResult, CachedEngine]:
    cached = CachedEngine(
        engine_for(server.url, **overrides), ResponseCache(tmp_path / "c.sqlite"), stage="s"
    )
    request = GenerationRequest("r0", prompt, SamplingParams(max_tokens=128))
    [result] = cached.generate([request])
    return result, cached


def written(cached: CachedEngine, results: list[GenerationResult]) -> None:
    """What a stage does with results: a frame of the texts, a frame of the failure rows."""
    pl.DataFrame({"text": [r.text.strip() for r in results if r.ok]}).write_parquet("/dev/null")
    schema = {name: _POLARS[kind] for name, kind in FAILURE_COLUMNS.items()}
    pl.DataFrame(cached.cache.failures(), schema=schema).write_parquet("/dev/null")


BAD_ANSWERS = [
    ("surrogate", "InvalidResponse", "InvalidUnicode: lone surrogate"),
    ("nonstring", "InvalidResponse", "NonStringContent"),
    ("huge", "OversizedResponse", "on the wire"),
    ("gzipbomb", "OversizedResponse", "after decompression"),
    ("othermodel", "ModelMismatch", "some-other-model"),
    ("nofinish", "InvalidResponse", "UnexpectedFinish"),
    ("deepjson", "InvalidResponse", "RecursionError"),
    ("brotli", "InvalidResponse", "Content-Encoding 'br' is not decoded"),
    ("trickle", "TimeoutError", "no response within the time limit"),
]


@pytest.mark.parametrize(("behaviour", "error_class", "reason"), BAD_ANSWERS)
def test_a_bad_answer_is_one_transient_failure_and_never_cached(
    server, tmp_path, behaviour, error_class, reason
):
    result, cached = ask(server, tmp_path, f"{behaviour}:1")
    assert result.finish_reason == "error" and result.text == ""
    assert result.error.startswith(error_class) and reason in result.error
    assert len(cached.cache) == 0, "a bad answer must never be cached"
    [row] = cached.cache.failures()
    assert row["error_class"] == error_class and row["retryable"] is True
    written(cached, [result])


@pytest.mark.parametrize("behaviour", ["negtokens", "hugetokens", "inftokens", "natokens"])
def test_untrustworthy_token_counts_are_estimated_and_the_answer_kept(server, tmp_path, behaviour):
    result, cached = ask(server, tmp_path, f"{behaviour}:1")
    assert result.ok and result.text.startswith("A fresh rewrite")
    assert 0 <= result.prompt_tokens < 100 and 0 <= result.completion_tokens <= 2 * 128 + 16
    assert any(note.startswith("usage_estimated") for note in result.notes)
    assert cached.stats.usage_estimated == 1 and len(cached.cache) == 1
    assert 0 <= cached.stats.prompt_tokens < 2**63, "must fit the Int64 metadata"
    written(cached, [result])


def test_a_30_mib_body_is_not_held_in_memory(server, tmp_path):
    server.gzip_bomb({"model": "test-model", "messages": [{"content": ""}]})  # built up front
    for behaviour in ("huge", "gzipbomb"):
        cached = CachedEngine(engine_for(server.url), ResponseCache(tmp_path / f"{behaviour}.db"))
        tracemalloc.start()
        [result] = cached.generate([GenerationRequest("r", f"{behaviour}:m")])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.error.startswith("OversizedResponse")
        assert peak < 8 * MIB, f"{behaviour}: {peak / MIB:.1f} MiB allocated for a 30 MiB body"


def test_permanent_400_is_cached_as_a_failure_and_not_resent(server, tmp_path):
    result, cached = ask(server, tmp_path, "client400:1")
    assert result.finish_reason == "error" and result.permanent and result.attempts == 1
    [row] = cached.cache.failures()
    assert row["retryable"] is False
    assert failure_metadata([row], 1)["generation_failures_permanent"] == 1
    server.reset()
    again, rerun = ask(server, tmp_path, "client400:1")
    assert server.seen["client400:1"] == 0, "a permanent failure must not be re-sent"
    assert again.cached and not again.ok and rerun.cache.failures()[0]["retryable"] is False


def test_a_changed_request_is_sent_again_after_a_permanent_failure(server, tmp_path):
    ask(server, tmp_path, "client400:2")
    server.reset()
    cached = CachedEngine(engine_for(server.url), ResponseCache(tmp_path / "c.sqlite"))
    cached.generate([GenerationRequest("r0", "client400:2", SamplingParams(max_tokens=64))])
    assert server.seen["client400:2"] == 1


def test_served_model_is_recorded_and_a_mismatch_can_be_accepted(server, tmp_path):
    result, cached = ask(server, tmp_path, "ok:1")
    assert result.ok and result.served_model == "test-model"
    accepted, cached = ask(server, tmp_path, "othermodel:2", served_model_policy="accept")
    assert accepted.ok and accepted.served_model == "some-other-model"
    assert cached.stats.served_models == {"some-other-model": 1}
    assert served_model_matches("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert not served_model_matches("gpt-4o", "gpt-4o-mini-2024-07-18")
    assert served_model_matches("llama", "meta/llama-3", aliases=("meta/llama-3",))


def test_a_trickling_body_holds_a_request_for_its_budget_not_attempts_times_deadline(
    server, tmp_path
):
    began = time.perf_counter()
    result, _ = ask(
        server, tmp_path, "trickle:2", max_attempts=6, request_timeout_s=0.3, request_budget_s=0.7
    )
    held = time.perf_counter() - began
    assert result.finish_reason == "error" and "request budget of 0.7 s spent" in result.error
    assert held < 1.5, f"held {held:.2f} s; 6 attempts x 0.3 s would be 1.8 s"


def test_a_stalled_server_releases_the_batch_and_unsent_requests_stay_retryable(server, tmp_path):
    requests = [GenerationRequest(f"r{i}", f"trickle:stall{i}") for i in range(8)]
    engine = engine_for(
        server.url,
        max_concurrency=2,
        max_attempts=3,
        request_timeout_s=0.3,
        request_budget_s=30,
        stall_budget_s=0.5,
    )
    cached = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite"))
    began = time.perf_counter()
    results = cached.generate(requests)
    held = time.perf_counter() - began
    assert all(r.finish_reason == "error" and r.retryable for r in results)
    stalled = [r for r in results if r.error.startswith("Stalled")]
    assert stalled and held < 2.0, f"held {held:.2f} s; without the stall budget ~3.6 s"
    assert sum(1 for p in server.seen if p.startswith("trickle:stall")) < 8
    assert len(cached.cache) == 0


def _poison(path, key: str, blob: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, blob))


@pytest.mark.parametrize(
    "entry",
    [
        {"request_id": "r0", "text": "broken \ud800", "finish_reason": "stop"},  # v1, surrogate
        {"request_id": "r0", "text": 12345, "finish_reason": "stop"},
        {"v": 99, "request_id": "r0", "text": "from the future", "finish_reason": "stop"},
        {"v": 2, "request_id": "r0", "text": "", "finish_reason": "error", "error": "Timeout"},
        {"request_id": "r0", "text": "x", "finish_reason": "weird"},
        {"request_id": "r0", "text": "x", "finish_reason": "stop", "extra": 1},
        "not an object",
    ],
)
def test_a_poisoned_cache_entry_is_asked_again_and_replaced(server, tmp_path, entry):
    path = tmp_path / "c.sqlite"
    engine = engine_for(server.url)
    request = GenerationRequest("r0", "ok:poisoned", SamplingParams(max_tokens=128))
    ResponseCache(path).close()
    _poison(path, cache_key(engine.identity, request), json.dumps(entry))
    server.reset()
    cached = CachedEngine(engine, ResponseCache(path))
    [result] = cached.generate([request])
    assert result.ok and not result.cached and server.seen["ok:poisoned"] == 1
    assert cached.stats.cache_invalid == 1
    server.reset()
    again = CachedEngine(engine, ResponseCache(path))
    [hit] = again.generate([request])
    assert hit.cached and hit.text == result.text and server.seen["ok:poisoned"] == 0


def test_unparseable_cache_blob_is_treated_as_missing(tmp_path):
    path = tmp_path / "c.sqlite"
    engine = ScriptedEngine(lambda r: "fine")
    request = GenerationRequest("r0", "p")
    ResponseCache(path).close()
    _poison(path, cache_key(engine.identity, request), "{not json")
    [result] = CachedEngine(engine, ResponseCache(path)).generate([request])
    assert result.ok and len(engine.seen) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (GenerationResult("", "bad \udfff", "stop"), "InvalidUnicode"),
        (GenerationResult("", "nul \x00 byte", "stop"), "InvalidUnicode: NUL"),
        (GenerationResult("", 42, "stop"), "NonStringContent"),  # type: ignore[arg-type]
        (GenerationResult("", "x" * 100_000, "stop"), "OversizedContent"),
        (GenerationResult("", "x", "abort"), "UnexpectedFinish"),  # type: ignore[arg-type]
    ],
)
def test_every_backend_is_validated_by_the_cache_wrapper(tmp_path, answer, reason):
    """vLLM and transformers results go through the same checks as the openai backend's."""
    engine = ScriptedEngine(lambda r: GenerationResult(**asdict(answer)))
    cached = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite"), stage="s")
    requests = [GenerationRequest("bad", "p", SamplingParams(max_tokens=64))]
    [result] = cached.generate(requests)
    assert result.finish_reason == "error" and reason in result.error
    assert len(cached.cache) == 0 and cached.stats.invalid_answers == 1
    written(cached, [result])


def test_local_backend_token_counts_are_bounded(tmp_path):
    answer = GenerationResult("", "short text", "stop", prompt_tokens=-3, completion_tokens=10**30)
    engine = ScriptedEngine(lambda r: GenerationResult(**asdict(answer)))
    cached = CachedEngine(engine, ResponseCache(tmp_path / "c.sqlite"))
    [result] = cached.generate([GenerationRequest("a", "a prompt", SamplingParams(max_tokens=8))])
    assert result.ok and result.prompt_tokens == 2 and result.completion_tokens == 3
    assert len(result.notes) == 2 and cached.stats.usage_estimated == 1


def test_one_batch_mixing_every_behaviour_keeps_the_good_answers(server, tmp_path):
    kinds = [
        "ok",
        "surrogate",
        "nonstring",
        "huge",
        "gzipbomb",
        "negtokens",
        "inftokens",
        "client400",
        "othermodel",
        "nofinish",
        "trickle",
    ]
    requests = [GenerationRequest(f"r{i}", f"{kind}:mix") for i, kind in enumerate(kinds)]
    cached = CachedEngine(engine_for(server.url), ResponseCache(tmp_path / "c.sqlite"), stage="s")
    results = cached.generate(requests)
    assert [r.ok for r in results] == [k in ("ok", "negtokens", "inftokens") for k in kinds]
    failures = cached.cache.failures()
    assert len(failures) == 8 and sum(not f["retryable"] for f in failures) == 1
    written(cached, results)
    server.reset()
    CachedEngine(engine_for(server.url), ResponseCache(tmp_path / "c.sqlite")).generate(requests)
    resent = {p.split(":")[0] for p in server.seen}
    assert resent == {
        "surrogate",
        "nonstring",
        "huge",
        "gzipbomb",
        "othermodel",
        "nofinish",
        "trickle",
    }


E2E_PLAN = (
    "surrogate",
    "nonstring",
    "huge",
    "gzipbomb",
    "negtokens",
    "hugetokens",
    "inftokens",
    "natokens",
    "client400",
    "othermodel",
    "trickle",
    "nofinish",
    "deepjson",
)
E2E_FAILING = {"surrogate", "nonstring", "huge", "gzipbomb", "client400", "othermodel"} | {
    "trickle",
    "nofinish",
    "deepjson",
}
REPHRASE_RUN = {"ops": {"rephrasings": {"config": {"max_seeds": 5, "max_tokens": 128}}}}


def _text_seed_shard(data, shard: str, n: int) -> None:
    """`n` text seed rows written as one shard of `text_seeds`, as the seeds asset would."""
    from synth_assets.seeds import TEXT_SCHEMA
    from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame

    rows = [
        make_row(
            stage="text_seeds",
            payload={
                "text": f"Passage {i}: the for statement iterates over a sequence.",
                "title": f"t{i}",
            },
            ctx=RowContext("seeds"),
            source=Source("pydoc", f"topics:{i}", "PSF-2.0"),
        )
        for i in range(n)
    ]
    (data / "text_seeds").mkdir(parents=True)
    rows_to_frame(rows, TEXT_SCHEMA).write_parquet(data / "text_seeds" / f"{shard}.parquet")


@pytest.mark.slow
def test_materialization_against_a_hostile_server_writes_good_rows_and_failure_rows(
    tmp_path, monkeypatch
):
    """`make run`-style: SYNTH_ENGINE=openai, every bad behaviour once, two runs."""
    import dagster as dg

    from resources.engine import GenerationEngine
    from synth_assets.partitions import SEED_SHARDS
    from synth_jobs.definitions import all_assets
    from synth_jobs.profiles import local_resources
    from tests.dagster_results import materialization_metadata

    home, shard = tmp_path / "home", "ref-n64-00000"
    _text_seed_shard(home / "data", shard, 5)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SEED_SHARDS, [shard])
    with HostileServer(plan=E2E_PLAN, trickle_interval_s=0.05) as srv:
        srv.gzip_bomb({"model": "test-model", "messages": [{"content": ""}]})  # built up front
        monkeypatch.setenv("SYNTH_ENGINE", "openai")
        monkeypatch.setenv("SYNTH_MODEL", "test-model")
        monkeypatch.setenv("SYNTH_OPENAI_BASE_URL", srv.url)
        resources = local_resources(home)
        engine = resources["engine"]
        assert (engine.backend, engine.openai_base_url) == ("openai", srv.url)
        resources["engine"] = GenerationEngine(  # the profile's engine, with test-sized limits
            backend=engine.backend,
            model=engine.model,
            openai_base_url=engine.openai_base_url,
            cache_dir=engine.cache_dir,
            models_dir=engine.models_dir,
            max_attempts=2,
            request_timeout_s=1.5,  # room for a loaded CI box; the trickle needs 200 s
            request_budget_s=3.0,
        )

        def materialize(selection: list[str], **kwargs) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                all_assets, selection=selection, resources=resources, instance=instance, **kwargs
            )

        first = materialize(["rephrasings"], partition_key=shard, run_config=REPHRASE_RUN)
        assert first.success
        meta = materialization_metadata(first, "rephrasings")
        assert meta["requests"] == 20 and meta["dagster/row_count"] == 20 - len(E2E_FAILING)
        assert meta["generation_failures"] == len(E2E_FAILING)
        assert meta["generation_failures_permanent"] == 1 and meta["usage_estimated"] == 4
        assert meta["completion_tokens"] >= 0 and meta["cost_usd"] >= 0
        rows = pl.read_parquet(home / "data" / "rephrasings" / f"{shard}.parquet")
        assert set(rows.get_column("generator").struct.field("model")) == {"test-model"}
        logged = materialize(["generation_failures"])
        assert logged.success
        summary = materialization_metadata(logged, "generation_failures")
        assert (summary["retryable"], summary["permanent"]) == (len(E2E_FAILING) - 1, 1)
        failures = pl.read_parquet(home / "data" / "generation_failures.parquet")
        assert failures.height == len(E2E_FAILING)
        assert failures.filter(~pl.col("retryable")).get_column("error").to_list() == [
            'ClientError: HTTP 400: {"error": {"message": "bad request"}}'
        ]
        assert set(srv.assigned.values()) == set(E2E_PLAN) | {"ok"}
        by_behaviour = {b: p for p, b in srv.assigned.items()}

        srv.reset()
        second = materialize(["rephrasings"], partition_key=shard, run_config=REPHRASE_RUN)
        assert second.success
        again = materialization_metadata(second, "rephrasings")
        resent = {srv.assigned[p] for p in srv.seen}
        assert resent == E2E_FAILING - {"client400"}, "a re-run re-sends only transient failures"
        assert srv.seen[by_behaviour["client400"]] == 0
        assert again["cache_hits"] == 20 - len(resent)
        assert again["dagster/row_count"] == meta["dagster/row_count"]
