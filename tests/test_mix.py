import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from synth_lib.mix.shards import ManifestError, build_mix, read_shards, verify_shards, write_shards


def _frame(n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"text": [f"{tag}{i}" for i in range(n)], "id": [f"{tag}{i}" for i in range(n)]}
    )


def test_ratio_and_seeded_shuffle():
    mix, plan = build_mix(_frame(50, "r"), _frame(10, "s"), 1.0, seed=3)
    assert (plan.real_taken, plan.synthetic_taken) == (10, 10)
    again, _ = build_mix(_frame(50, "r"), _frame(10, "s"), 1.0, seed=3)
    other, _ = build_mix(_frame(50, "r"), _frame(10, "s"), 1.0, seed=4)
    assert mix["id"].to_list() == again["id"].to_list() != other["id"].to_list()


def test_ratio_holds_when_real_rows_are_short():
    _, plan = build_mix(_frame(4, "r"), _frame(10, "s"), 2.0, seed=0)
    assert (plan.real_taken, plan.synthetic_taken) == (4, 2)


def test_shards_manifest_and_corruption(tmp_path):
    target = tmp_path / "mix"
    manifest = write_shards(_frame(25, "x"), target, rows_per_shard=10, extra={"seed": 1})
    assert [s["rows"] for s in manifest["shards"]] == [10, 10, 5]
    assert read_shards(target).height == 25
    assert json.loads((target / "manifest.json").read_text())["seed"] == 1
    shard = target / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"part-00001\.parquet"):
        verify_shards(target)


def test_a_missing_shard_is_named(tmp_path):
    target = tmp_path / "mix"
    write_shards(_frame(25, "x"), target, rows_per_shard=10, extra={})
    (target / "part-00002.parquet").unlink()
    with pytest.raises(ManifestError, match=r"part-00002\.parquet: shard listed .* is missing"):
        verify_shards(target)


def test_row_counts_are_checked_per_shard_and_in_total(tmp_path):
    target = tmp_path / "mix"
    write_shards(_frame(25, "x"), target, rows_per_shard=10, extra={})
    manifest_path = target / "manifest.json"
    good = json.loads(manifest_path.read_text())
    bad_shard = json.loads(json.dumps(good))
    bad_shard["shards"][2]["rows"] = 6
    manifest_path.write_text(json.dumps(bad_shard))
    with pytest.raises(ManifestError, match=r"part-00002\.parquet: 5 rows, manifest says 6"):
        verify_shards(target)
    bad_total = {**good, "total_rows": 26}
    manifest_path.write_text(json.dumps(bad_total))
    with pytest.raises(ManifestError, match="shards hold 25 rows, total_rows says 26"):
        verify_shards(target)
    manifest_path.write_text(json.dumps(good))
    assert verify_shards(target)["total_rows"] == 25


def test_every_row_kind_gets_a_text_view():
    from datetime import UTC, datetime

    from synth_lib.mix.shards import to_mix_schema
    from synth_lib.provenance.schema import PROVENANCE_SCHEMA

    prov = {name: [None] for name in PROVENANCE_SCHEMA}
    prov["id"] = ["x"]
    prov["created_at"] = [datetime(2026, 1, 1, tzinfo=UTC)]
    math = pl.DataFrame({"question": ["2+2?"], "answer": ["4\n#### 4"], "gold": ["4"], **prov})
    pair = pl.DataFrame({"prompt": ["p"], "chosen": ["good"], "rejected": ["bad"], **prov})
    text = pl.DataFrame({"text": ["plain"], **prov})
    assert to_mix_schema(math, "math")["text"].to_list() == ["2+2?\n\n4\n#### 4"]
    assert to_mix_schema(math, "math")["response"].to_list() == ["4\n#### 4"]
    out = to_mix_schema(pair, "preference")
    assert (out["text"][0], out["rejected"][0]) == ("p\n\ngood", "bad")
    assert to_mix_schema(text, "text")["weight"].to_list() == [1.0]


def _mix_rows(smoke: int) -> pl.DataFrame:
    """One human seed and `smoke` rephrasings of it by the smoke model."""
    from synth_lib.provenance.schema import Generator, RowContext, Source, make_row, rows_to_frame

    ctx = RowContext(run_id="test-run")
    seed = make_row(
        stage="text_seeds", payload={"text": "s"}, ctx=ctx, source=Source("d", "1", "x")
    )
    smoke_model = Generator("transformers", "smoke-random-abc", "r", "t", "h", "{}", 0, True)
    rows = [seed] + [
        make_row(
            stage="rephrasings",
            payload={"text": f"noise {i}"},
            ctx=ctx,
            parents=[seed],
            generator=smoke_model,
        )
        for i in range(smoke)
    ]
    return rows_to_frame(rows, {"text": pl.Utf8})


@pytest.mark.parametrize(("smoke", "passed"), [(3, False), (0, True)])
def test_smoke_model_rows_raise_a_warning_that_does_not_block(tmp_path, smoke, passed):
    from resources.parquet_io import PolarsParquetIOManager
    from synth_assets.mix import training_mix_not_smoke_model

    frame = _mix_rows(smoke)

    @dg.asset(name="training_mix")
    def stub() -> pl.DataFrame:
        return frame

    @dg.asset(deps=["training_mix"])
    def trainer() -> None:
        """Runs after the mix whatever the WARN check says."""

    result = dg.materialize(
        [stub, training_mix_not_smoke_model, trainer],
        resources={"io_manager": PolarsParquetIOManager(base_dir=str(tmp_path))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert (check.passed, check.severity) == (passed, dg.AssetCheckSeverity.WARN)
    assert check.metadata["smoke_model_rows"].value == smoke
    if smoke:
        assert f"{smoke} rows come from the random-weight smoke model" in check.description
        assert "SYNTH_MODEL" in check.description
    assert len(result.asset_materializations_for_node("trainer")) == 1


def _mix_inputs() -> list[dg.AssetsDefinition]:
    """Unpartitioned stand-ins for every input of `training_mix`: three text seeds, a
    rephrasing of each, and nothing else (empty frames with the stage's columns)."""
    from synth_assets.mix import training_mix
    from synth_lib.provenance.schema import Generator, RowContext, Source, make_row, rows_to_frame
    from synth_lib.reasoning.debate import PAYLOAD_SCHEMA

    ctx = RowContext(run_id="test-run")
    model = Generator("scripted", "m", "r", "t", "h", "{}", 0)
    seeds = [
        make_row(stage="text_seeds", payload={"text": t}, ctx=ctx, source=Source("d", t, "MIT"))
        for t in ("alpha", "beta", "gamma")
    ]
    rewrites = [
        make_row(
            stage="rephrasings",
            payload={"text": s["text"] + "!"},
            ctx=ctx,
            parents=[s],
            generator=model,
        )
        for s in seeds
    ]
    frames = {
        "text_seeds": rows_to_frame(seeds, {"text": pl.Utf8}),
        "rephrasings": rows_to_frame(rewrites, {"text": pl.Utf8}),
        "debate_verdicts": rows_to_frame([], PAYLOAD_SCHEMA),
        "quality_scores": pl.DataFrame(schema={"id": pl.Utf8, "quality_passed": pl.Boolean}),
    }

    def stub(name: str) -> dg.AssetsDefinition:
        frame = frames.get(name, rows_to_frame([], {"text": pl.Utf8}))

        @dg.asset(name=name)
        def _stub() -> pl.DataFrame:
            return frame

        return _stub

    return [stub(key.to_user_string()) for key in training_mix.keys_by_input_name.values()]


def _corrupt(target, how: str) -> None:
    manifest = json.loads((target / "manifest.json").read_text())
    if how == "missing_shard":
        (target / manifest["shards"][1]["path"]).unlink()
    elif how == "row_count":
        manifest["shards"][1]["rows"] += 1
        manifest["total_rows"] += 1
        (target / "manifest.json").write_text(json.dumps(manifest))
    else:
        shard = target / manifest["shards"][1]["path"]
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["missing_shard", "row_count", "flipped_byte"])
def test_shards_verified_check_blocks_downstream_when_the_shards_change(tmp_path, how):
    from resources.parquet_io import PolarsParquetIOManager
    from resources.storage import SynthStorage
    from synth_assets.mix import training_mix, training_mix_shards_verified

    partitions = training_mix.partitions_def

    @dg.asset(
        deps=["training_mix"],
        partitions_def=partitions,
        backfill_policy=training_mix.backfill_policy,
    )
    def trainer() -> None:
        """Materializes whenever it runs: only the blocking check can keep it out."""

    instance = dg.DagsterInstance.ephemeral()
    key = None
    if partitions is not None:
        key = "ref-n64-00000"
        instance.add_dynamic_partitions(partitions.name, [key])
    assets = [*_mix_inputs(), training_mix, training_mix_shards_verified, trainer]
    resources = {
        "storage": SynthStorage(home=str(tmp_path)),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
    }
    first = dg.materialize(
        assets,
        resources=resources,
        instance=instance,
        partition_key=key,
        run_config={"ops": {"training_mix": {"config": {"rows_per_shard": 2}}}},
    )
    [check] = first.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows"].value == 6
    assert len(first.asset_materializations_for_node("trainer")) == 1
    manifest = first.asset_materializations_for_node("training_mix")[0].metadata["manifest"]
    target = Path(manifest.value).parent
    _corrupt(target, how)
    second = dg.materialize(
        assets,
        selection=dg.AssetSelection.checks(training_mix_shards_verified)
        | dg.AssetSelection.assets(trainer),
        resources=resources,
        instance=instance,
        partition_key=key,
        raise_on_error=False,
    )
    [check] = second.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "part-00001.parquet" in check.description
    assert second.asset_materializations_for_node("trainer") == []


def test_real_rows_start_with_the_seeds_of_the_chosen_synthetic_rows():
    real = _frame(50, "r").with_columns(root_seed_ids=pl.col("id").map_elements(lambda i: [i]))
    synthetic = _frame(3, "s").with_columns(root_seed_ids=pl.Series([["r7"], ["r41"], ["r7"]]))
    mix, plan = build_mix(real, synthetic, 1.0, seed=0)
    real_ids = set(mix.filter(pl.col("id").str.starts_with("r"))["id"])
    assert plan.real_taken == 3 and {"r7", "r41"} <= real_ids
