"""Seed shards: keys, the seed-folder sensor, the stale-shard schedule, finding a row's shards."""

import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from synth_assets.partitions import SEED_SHARDS, seed_shards
from synth_jobs.automation import (
    new_benchmark_files,
    new_seed_files,
    stale_shards,
    stale_shards_backfill,
)
from synth_jobs.definitions import defs
from synth_lib.seeds import sharding
from synth_lib.seeds.sharding import ShardKey, ShardKeyError, default_shards, shards_containing


def test_shard_keys_round_trip_and_say_where_they_come_from():
    key = ShardKey.parse("gsm8k-n64-00003")
    assert (key.origin, key.size, key.index) == ("gsm8k", 64, 3)
    assert str(key) == "gsm8k-n64-00003"
    assert key.lines == range(193, 257) and key.rows == range(192, 256)
    origin = sharding.file_origin("notes/My Seeds.jsonl")
    assert origin.startswith("file_my_seeds_jsonl_") and origin == sharding.file_origin(
        "notes/My Seeds.jsonl"
    )
    assert origin != sharding.file_origin("other/My Seeds.jsonl"), "the digest tells files apart"
    with pytest.raises(ShardKeyError, match="not a shard key"):
        ShardKey.parse("ref-0")
    assert sharding.shard_keys("ref", 130, 64) == [
        "ref-n64-00000",
        "ref-n64-00001",
        "ref-n64-00002",
    ]
    keys = ["rgym-n1-00000", "ref-n64-00001", "ref-n64-00000", "file_x_1a2b3c4d-n64-00000"]
    assert default_shards(keys) == ["ref-n64-00000", "rgym-n1-00000"]


def _tick(instance, sensor, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor(context)


def test_new_seed_files_adds_shards_and_requests_runs_only_for_new_ones(tmp_path, monkeypatch):
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    rows = [json.dumps({"text": f"passage {i}"}) for i in range(150)]
    (seed_dir / "notes.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("SYNTH_SEED_DIR", str(seed_dir))
    monkeypatch.setenv("SYNTH_GSM8K_PATH", "")
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(instance, new_seed_files)
    (added,) = first.dynamic_partitions_requests
    file_keys = sharding.file_shard_keys("notes.jsonl", 150, 64)
    assert len(file_keys) == 3
    assert "ref-n64-00000" in added.partition_keys and "rgym-n1-00000" in added.partition_keys
    assert set(file_keys) <= set(added.partition_keys)
    assert [r.partition_key for r in first.run_requests] == file_keys, "built-ins are not run"
    instance.add_dynamic_partitions(SEED_SHARDS, list(added.partition_keys))

    quiet = _tick(instance, new_seed_files, first.cursor)
    assert not quiet.run_requests and not quiet.dynamic_partitions_requests

    more = rows + [json.dumps({"text": f"passage {i}"}) for i in range(150, 200)]
    (seed_dir / "notes.jsonl").write_text("\n".join(more) + "\n")
    pl.DataFrame({"question": ["1+1?"], "answer": ["#### 2"]}).write_parquet(
        seed_dir / "math.parquet"
    )
    grown = _tick(instance, new_seed_files, quiet.cursor)
    new_keys = [r.partition_key for r in grown.run_requests]
    assert new_keys == [
        sharding.file_shard_keys("math.parquet", 1, 64)[0],
        sharding.file_shard_keys("notes.jsonl", 200, 64)[3],
    ]
    assert list(grown.dynamic_partitions_requests[0].partition_keys) == new_keys


def test_new_benchmark_files_requests_curation_once_per_change(tmp_path, monkeypatch):
    bench = tmp_path / "bench"
    bench.mkdir()
    monkeypatch.setenv("SYNTH_BENCHMARK_DIR", str(bench))
    instance = dg.DagsterInstance.ephemeral()
    (bench / "mmlu.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    first = _tick(instance, new_benchmark_files)
    assert len(first.run_requests) == 1
    assert isinstance(_tick(instance, new_benchmark_files, first.cursor), dg.SkipReason)


@dg.asset(partitions_def=seed_shards)
def leaf(context: dg.AssetExecutionContext) -> None:
    if context.partition_key == "ref-n64-00001":
        raise RuntimeError("this shard fails")


def test_stale_shards_are_the_missing_and_the_failed_only():
    instance = dg.DagsterInstance.ephemeral()
    keys = ["ref-n64-00000", "ref-n64-00001", "ref-n64-00002"]
    instance.add_dynamic_partitions(SEED_SHARDS, keys)
    for key in keys[:2]:
        dg.materialize([leaf], partition_key=key, instance=instance, raise_on_error=False)
    assert stale_shards(instance, dg.AssetKey("leaf")) == ["ref-n64-00001", "ref-n64-00002"]


def test_shards_containing_finds_rows_and_descendants(tmp_path):
    for asset, shard, ids, roots in (
        ("text_seeds", "ref-n64-00000", ["s1", "s2"], [["s1"], ["s2"]]),
        ("text_seeds", "ref-n64-00001", ["s3"], [["s3"]]),
        ("rephrasings", "ref-n64-00001", ["r3"], [["s3"]]),
    ):
        (tmp_path / asset).mkdir(exist_ok=True)
        pl.DataFrame({"id": ids, "root_seed_ids": roots}).write_parquet(
            tmp_path / asset / f"{shard}.parquet"
        )
    assert shards_containing(tmp_path, ["s2", "r3", "nope"]) == {
        "s2": [("text_seeds", "ref-n64-00000")],
        "r3": [("rephrasings", "ref-n64-00001")],
        "nope": [],
    }
    by_seed = shards_containing(tmp_path, ["s3"], column="root_seed_ids")
    assert sorted(by_seed["s3"]) == [
        ("rephrasings", "ref-n64-00001"),
        ("text_seeds", "ref-n64-00001"),
    ]


@dg.asset(partitions_def=seed_shards)
def rows_of_shard(context: dg.AssetExecutionContext) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"{context.partition_key}-{i}" for i in range(3)]})


@dg.asset_check(asset=rows_of_shard)
def sees_its_own_shard(
    context: dg.AssetCheckExecutionContext, rows_of_shard: pl.DataFrame
) -> dg.AssetCheckResult:
    shard = context.op_execution_context.partition_key
    return dg.AssetCheckResult(
        passed=rows_of_shard["id"].str.starts_with(shard).all() and rows_of_shard.height == 3
    )


def test_a_shard_check_and_a_cross_shard_reader_see_what_they_should(tmp_path):
    from resources.parquet_io import PolarsParquetIOManager

    @dg.asset
    def every_shard(rows_of_shard: dict[str, pl.LazyFrame]) -> pl.DataFrame:
        return pl.concat([scan.collect() for scan in rows_of_shard.values()])

    io_manager = PolarsParquetIOManager(base_dir=str(tmp_path))
    instance = dg.DagsterInstance.ephemeral()
    keys = ["ref-n64-00000", "ref-n64-00001", "ref-n64-00002"]
    instance.add_dynamic_partitions(SEED_SHARDS, keys)
    for key in keys[:2]:
        result = dg.materialize(
            [rows_of_shard, sees_its_own_shard],
            partition_key=key,
            instance=instance,
            resources={"io_manager": io_manager},
        )
        assert all(c.passed for c in result.get_asset_check_evaluations())
    assert (tmp_path / "rows_of_shard" / "ref-n64-00001.parquet").is_file()
    dg.materialize(
        [rows_of_shard.to_source_assets()[0], every_shard],
        instance=instance,
        resources={"io_manager": io_manager},
    )
    assert pl.read_parquet(tmp_path / "every_shard.parquet").height == 6, "unmaterialized skipped"


def test_the_nightly_schedule_requests_the_stale_shards():
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 1, 2, 3, tzinfo=UTC)
        ) as context,
    ):
        instance.add_dynamic_partitions(SEED_SHARDS, ["ref-n64-00000", "stdlib-n64-00000"])
        requests = stale_shards_backfill(context)
    assert [r.partition_key for r in requests] == ["ref-n64-00000", "stdlib-n64-00000"]
    assert [r.run_key for r in requests] == [
        "202601020300-ref-n64-00000",
        "202601020300-stdlib-n64-00000",
    ]
