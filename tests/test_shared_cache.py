"""The response cache and failure log shared by the workers of a fleet: the PostgreSQL
backend against the machine's PostgreSQL (a fresh database per test), and the SQLite one
through the same behaviour tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from resources.engine import GenerationEngine
from synth_jobs.profiles import local_resources, production_resources
from synth_lib.engines.base import GenerationRequest, GenerationResult, SamplingParams, cache_key
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.pg_cache import PgResponseCache, open_response_cache
from tests.conftest import PG
from tests.scripted_engine import ScriptedEngine

OpenCache = Callable[[], ResponseCache]


def _pg_url(database: str) -> str:
    return f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{database}"


@pytest.fixture(params=["sqlite", "postgres"])
def open_cache(request, tmp_path: Path) -> OpenCache:
    """Opens one more worker's connection to the same store; all are closed afterwards."""
    if request.param == "postgres":
        url = _pg_url(request.getfixturevalue("postgres_db"))
    opened: list[ResponseCache] = []

    def open_one() -> ResponseCache:
        if request.param == "postgres":
            cache = open_response_cache(url, tmp_path / "unused.sqlite")
            assert isinstance(cache, PgResponseCache)
        else:
            cache = open_response_cache("", tmp_path / "c.sqlite")
        opened.append(cache)
        return cache

    yield open_one
    for cache in opened:
        cache.close()
    assert not (request.param == "postgres" and (tmp_path / "unused.sqlite").exists())


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"r{i}", f"prompt {i}", SamplingParams(), 0) for i in range(n)]


def test_a_second_worker_gets_every_answer_from_the_first(open_cache: OpenCache):
    first_engine = ScriptedEngine(lambda r: r.prompt.upper())
    first = CachedEngine(first_engine, open_cache(), chunk_size=4, stage="s", run_tag="run1")
    answers = first.generate(_requests(10))
    second_engine = ScriptedEngine(lambda r: "never asked")
    second = CachedEngine(second_engine, open_cache(), chunk_size=4, stage="s", run_tag="run1")
    again = second.generate(_requests(10))
    assert len(first_engine.seen) == 10 and second_engine.seen == []
    assert second.stats.cache_hits == 10 and second.stats.engine_calls == 0
    assert (
        [r.text for r in again] == [r.text for r in answers] == [f"PROMPT {i}" for i in range(10)]
    )
    assert all(r.cached for r in again)


def test_transient_errors_are_not_shared_and_the_other_worker_retries_them(
    open_cache: OpenCache,
):
    def flaky(request):
        if request.prompt == "prompt 2":
            return GenerationResult(request.request_id, "", "error", error="Timeout: slow")
        return "ok"

    first = CachedEngine(ScriptedEngine(flaky), open_cache(), stage="s", run_tag="run1")
    assert [r.ok for r in first.generate(_requests(4))] == [True, True, False, True]
    engine = ScriptedEngine(lambda r: "ok now")
    second = CachedEngine(engine, open_cache(), stage="s", run_tag="run2")
    assert all(r.ok for r in second.generate(_requests(4)))
    assert [r.prompt for r in engine.seen] == ["prompt 2"]


def test_an_unreadable_shared_entry_is_asked_again_and_replaced(open_cache: OpenCache):
    cache = open_cache()
    engine = ScriptedEngine(lambda r: "fresh")
    key = cache_key(engine.identity, _requests(1)[0])
    cache._store([(key, '{"v": 99, "text": "from a newer version"}')])
    cached = CachedEngine(engine, open_cache(), stage="s")
    assert [r.text for r in cached.generate(_requests(1))] == ["fresh"]
    assert cached.stats.cache_invalid == 1 and len(engine.seen) == 1
    assert cache.get_many([key])[key].text == "fresh"


def test_a_failure_recorded_by_one_worker_is_seen_by_the_other(open_cache: OpenCache):
    def truncated(request):
        return GenerationResult(request.request_id, "cut", "length")

    first = CachedEngine(ScriptedEngine(truncated), open_cache(), stage="cot", run_tag="a")
    first.generate(_requests(2))
    other = open_cache()
    rows = other.failures()
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1"]
    assert {(r["stage"], r["finish_reason"]) for r in rows} == {("cot", "length")}
    # The stage's next run (on the other worker) makes the earlier run's failures history.
    CachedEngine(ScriptedEngine(lambda r: "ok"), other, stage="cot", run_tag="b")
    assert open_cache().failures() == []


def test_a_run_of_one_shard_keeps_the_other_shards_failures(open_cache: OpenCache):
    def truncated(request):
        return GenerationResult(request.request_id, "cut", "length")

    engine = ScriptedEngine(truncated)
    CachedEngine(engine, open_cache(), stage="cot", run_tag="a", shard="s0").generate(_requests(2))
    # the same stage's run on another shard (other requests, none failing) in another run
    CachedEngine(ScriptedEngine(lambda r: "ok"), open_cache(), stage="cot", run_tag="b", shard="s1")
    assert sorted(r["request_id"] for r in open_cache().failures()) == ["r0", "r1"]
    # the next run of shard s0 itself makes its earlier failures history
    CachedEngine(ScriptedEngine(lambda r: "ok"), open_cache(), stage="cot", run_tag="c", shard="s0")
    assert open_cache().failures() == []


def test_a_cache_from_before_shards_gains_the_shard_column(tmp_path: Path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE failures (stage TEXT NOT NULL, key TEXT NOT NULL, "
            "run_tag TEXT NOT NULL, row TEXT NOT NULL, PRIMARY KEY (stage, key))"
        )
        conn.execute("INSERT INTO failures VALUES ('cot', 'k', 'a', '{\"request_id\": \"r0\"}')")
    cache = ResponseCache(path)
    assert [r["request_id"] for r in cache.failures()] == ["r0"]
    cache.put_failures("cot", "b", [("k2", {"request_id": "r1"})], shard="s1")
    cache.reset_failures("cot", "b", shard="")
    assert [r["request_id"] for r in cache.failures()] == ["r1"]
    cache.close()


def test_concurrent_writers_of_the_same_keys_all_succeed(open_cache: OpenCache):
    rows = [(f"k{i}", GenerationResult(f"k{i}", f"text {i}", "stop")) for i in range(200)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(order: int) -> None:
        try:
            start.wait()
            cache = open_cache()  # four workers starting at once create the tables once
            for _ in range(5):
                mine = rows if order % 2 else rows[::-1]  # opposite orders: no deadlock either
                cache.put_many(mine + mine[:3])  # a key twice in one batch
                cache.put_failures("s", "run", [(key, {"request_id": key}) for key, _ in mine])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    reader = open_cache()
    assert len(reader) == 200 and reader.get_many(["k7"])["k7"].text == "text 7"
    assert len(reader.failures()) == 200


def test_the_url_selects_the_backend(tmp_path: Path):
    assert type(open_response_cache("", tmp_path / "c.sqlite")) is ResponseCache
    with pytest.raises(ValueError, match="expected postgresql://"):
        open_response_cache("redis://127.0.0.1:6379/0", tmp_path / "c.sqlite")


def test_the_engine_resource_uses_the_shared_store_when_given_a_url(postgres_db, tmp_path):
    resource = GenerationEngine(
        backend="openai",
        model="m",
        cache_dir=str(tmp_path / "cache"),
        models_dir=str(tmp_path / "models"),
        cache_url=_pg_url(postgres_db),
    )
    try:
        assert isinstance(resource.cache, PgResponseCache)
    finally:
        resource.cache.close()
    assert not (tmp_path / "cache").exists()


def test_production_shares_the_instance_postgres_and_local_stays_sqlite(
    production_instance_env, postgres_db, tmp_path, monkeypatch
):
    for name, value in {
        "SYNTH_DATA_DIR": str(tmp_path / "data"),
        "SYNTH_OPENLINEAGE": "off",
        "SYNTH_MLFLOW": "off",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNTH_CACHE_URL", raising=False)
    local = local_resources(tmp_path / "home")["engine"]
    assert local.cache_url == "" and type(local.cache) is ResponseCache
    local.cache.close()
    with dg.build_resources({"engine": production_resources(tmp_path / "home")["engine"]}) as built:
        assert built.engine.cache_url == _pg_url(postgres_db)
        cache = built.engine.cache
        assert isinstance(cache, PgResponseCache)
        cache.put_many([("k", GenerationResult("k", "shared", "stop"))])
    other = open_response_cache(_pg_url(postgres_db), tmp_path / "unused.sqlite")
    assert other.get_many(["k"])["k"].text == "shared"
    other.close()
