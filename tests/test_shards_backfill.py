"""A backfill with one failing shard: re-running the stale shards touches only that one."""

import json

import dagster as dg
import polars as pl
import pytest

from synth_jobs.automation import stale_shards
from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from synth_lib.provenance.schema import content_hash
from synth_lib.seeds.sharding import file_shard_keys
from tests.dagster_results import materialization_metadata
from tests.shards import materialize_shard, shard_file

pytestmark = pytest.mark.slow
SELECTION = ["text_seeds", "code_seeds", "math_seeds", "seed_quarantine", "rephrasings"]
CONFIG = {"rephrasings": {"config": {"max_seeds": 2, "styles": ["easy"], "max_tokens": 16}}}


def _passages(prefix: str, n: int) -> str:
    words = [
        "loops",
        "lists",
        "tuples",
        "dictionaries",
        "sets",
        "classes",
        "modules",
        "functions",
        "generators",
    ]
    rows = [
        {"text": f"{prefix} passage {i}: " + " ".join(words[(i + k) % 9] for k in range(40))}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_only_the_failed_shard_runs_again(synth_home, tmp_path, monkeypatch):
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    (seed_dir / "a.jsonl").write_text(_passages("a", 4))
    b_text = _passages("b", 2)
    monkeypatch.setenv("SYNTH_SEED_DIR", str(seed_dir))
    shards = file_shard_keys("a.jsonl", 4, 2) + file_shard_keys("b.jsonl", 2, 2)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("seed_shards", shards)
    data = synth_home / "data"

    def run(shard):
        return materialize_shard(
            all_assets,
            shard,
            instance,
            selection=SELECTION,
            resources=local_resources(synth_home),
            run_config={"ops": CONFIG},
            raise_on_error=False,
        )

    # b.jsonl is not there yet when the backfill reaches its shard: that shard fails
    first = {shard: run(shard) for shard in shards}
    assert [r.success for r in first.values()] == [True, True, False]
    done = {
        s: content_hash(pl.read_parquet(shard_file(data, "rephrasings", s))) for s in shards[:2]
    }
    mtimes = {s: shard_file(data, "rephrasings", s).stat().st_mtime_ns for s in shards[:2]}
    assert stale_shards(instance, dg.AssetKey("rephrasings")) == [shards[2]]

    (seed_dir / "b.jsonl").write_text(b_text)
    again = {shard: run(shard) for shard in stale_shards(instance, dg.AssetKey("rephrasings"))}
    assert list(again) == [shards[2]] and again[shards[2]].success
    meta = materialization_metadata(again[shards[2]], "rephrasings")
    assert meta["engine_requests"] == 2 and meta["cache_hits"] == 0, "only b's two requests"
    assert stale_shards(instance, dg.AssetKey("rephrasings")) == []
    for shard in shards[:2]:
        path = shard_file(data, "rephrasings", shard)
        assert path.stat().st_mtime_ns == mtimes[shard], "a finished shard is not rewritten"
        assert content_hash(pl.read_parquet(path)) == done[shard]
