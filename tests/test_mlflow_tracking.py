"""MLflow tracking of real materializations, read back from the local MLflow store."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from mlflow import MlflowClient

from resources.parquet_io import PolarsParquetIOManager, lineage_failure_hook
from resources.tracking import MlflowTracking, default_tracking_uri
from synth_assets import seeds
from synth_assets.partitions import seed_shards
from synth_lib.lineage.tracking_values import (
    MAX_PARAM_CHARS,
    Markdown,
    tracked_values,
    tracking_key,
)
from tests.shards import REF, shard_file, shard_instance


@dg.asset(partitions_def=seed_shards)
def seed_sample(text_seeds: pl.DataFrame) -> dg.MaterializeResult:
    """A second step in the same run: its figures must land in the same MLflow run."""
    sample = text_seeds.head(5)
    return dg.MaterializeResult(
        value=sample,
        metadata={
            "dagster/row_count": sample.height,
            "pass_rate": 0.6,
            "by_reason": dg.MetadataValue.json({"ok": 3, "too_short": 2}),
            "model": "smoke-random@abc",
            "preview": dg.MetadataValue.md("| id |\n|---|\n| x |"),
        },
    )


def _materialize(home: Path, assets: list, tracking: MlflowTracking, **kwargs: Any):
    io_manager = PolarsParquetIOManager(base_dir=str(home / "data"), tracking=tracking)
    return dg.materialize(
        assets, resources={"io_manager": io_manager}, instance=shard_instance(REF), **kwargs
    )


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.to_user_string() == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Seeds (one step, four assets) and a downstream sample (a second step), one run."""
    home = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SYNTH_GSM8K_PATH", raising=False)
        result = _materialize(
            home,
            [*dg.load_assets_from_modules([seeds]), seed_sample],
            MlflowTracking(tracking_uri=uri, experiment_name="synth-test"),
            partition_key=REF,
        )
    assert result.success
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("synth-test")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{result.run_id}'"
    )
    return home, uri, result, client, runs


def test_one_mlflow_run_per_dagster_run(tracked):
    _, _, result, _, runs = tracked
    assert len(runs) == 1
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_job"] == result.job_def.name
    for key in ("text_seeds", "code_seeds", "seed_sample"):
        assert _metadata(result, key)["mlflow_run_id"] == run.info.run_id
        assert _metadata(result, key)["mlflow_errors"] == 0


def test_metadata_becomes_metrics_params_and_artifacts(tracked):
    home, _, result, client, (run,) = tracked
    metrics, params = run.data.metrics, run.data.params
    for key in ("text_seeds", "code_seeds"):
        rows = pl.read_parquet(shard_file(home / "data", key)).height
        assert metrics[f"{key}/{REF}/row_count"] == rows
        assert rows > 0 or key == "code_seeds", "a language-reference shard has no code"
        assert params[f"{key}/{REF}/code_version"] == "seeds-2"
        assert params[f"{key}/{REF}/content_hash"] == _metadata(result, key)["content_hash"]
    sample = f"seed_sample/{REF}"
    assert metrics[f"{sample}/pass_rate"] == 0.6
    assert metrics[f"{sample}/by_reason/too_short"] == 2
    assert params[f"{sample}/model"] == "smoke-random@abc"
    assert not any(name.startswith("text_seeds/column_schema") for name in params)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, sample)}
    assert f"{sample}/preview.md" in artifacts
    local = client.download_artifacts(run.info.run_id, f"{sample}/preview.md", str(home))
    assert Path(local).read_text() == "| id |\n|---|\n| x |"
    text_preview = client.download_artifacts(
        run.info.run_id, f"text_seeds/{REF}/preview.md", str(home)
    )
    assert "| id |" in Path(text_preview).read_text()


def test_another_process_finds_the_same_run(tracked):
    _, uri, result, _, (run,) = tracked
    fresh = MlflowTracking(tracking_uri=uri, experiment_name="synth-test")
    assert fresh.run_id_for(result.run_id, result.job_def.name) == run.info.run_id


def test_a_failed_step_marks_the_run_failed(tracked, tmp_path):
    _, uri, _, client, _ = tracked

    @dg.asset(hooks={lineage_failure_hook})
    def doomed() -> pl.DataFrame:
        raise RuntimeError("no GPU left")

    tracking = MlflowTracking(tracking_uri=uri, experiment_name="synth-test")
    result = _materialize(tmp_path, [doomed], tracking, raise_on_error=False)
    assert not result.success
    (run,) = client.search_runs(
        [client.get_experiment_by_name("synth-test").experiment_id],
        filter_string=f"tags.dagster_run_id = '{result.run_id}'",
    )
    assert run.info.status == "FAILED"
    assert "no GPU left" in run.data.tags["failed_step/doomed"]


def test_broken_tracking_never_fails_the_write(tmp_path):
    @dg.asset
    def small() -> pl.DataFrame:
        return pl.DataFrame({"x": [1, 2]})

    result = _materialize(tmp_path, [small], MlflowTracking(tracking_uri="nowhere://tracking"))
    assert result.success
    assert pl.read_parquet(tmp_path / "data" / "small.parquet").height == 2
    assert _metadata(result, "small")["mlflow_errors"] == 1


def test_default_store_is_sqlite_under_synth_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTH_HOME", str(tmp_path))
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"


def test_tracked_values_flatten_metadata():
    values = tracked_values(
        "rephrasings",
        {
            "dagster/row_count": 12,
            "pass_rate": 0.25,
            "smoke_model": True,
            "model": "transformers:smoke@r1",
            "rows_by_style": {"easy": 3, "qa": 9},
            "template_hashes": {"rephrase_easy": "ab12"},
            "styles": ["easy", "qa"],
            "cost_per_row": math.nan,
            "preview": Markdown("| a |"),
            "note": "x" * (MAX_PARAM_CHARS + 10),
            "skipped": None,
        },
    )
    assert values.metrics == {
        "rephrasings/row_count": 12.0,
        "rephrasings/pass_rate": 0.25,
        "rephrasings/rows_by_style/easy": 3.0,
        "rephrasings/rows_by_style/qa": 9.0,
    }
    assert values.params["rephrasings/smoke_model"] == "true"
    assert values.params["rephrasings/template_hashes/rephrase_easy"] == "ab12"
    assert values.params["rephrasings/styles"] == '["easy","qa"]'
    assert len(values.params["rephrasings/note"]) == MAX_PARAM_CHARS
    assert values.texts == {"rephrasings/preview.md": "| a |"}
    assert tracking_key("a", "b:c=d") == "a/b_c_d"


def _open_store(db: str) -> str:
    from resources.tracking import MlflowTracking

    try:
        MlflowTracking(tracking_uri=f"sqlite:///{db}")._experiment()
    except Exception as exc:  # the failure itself is what the test reports
        return repr(exc)
    return "ok"


def test_step_processes_creating_the_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Under the multiprocess executor, first steps start together on a fresh store."""
    import multiprocessing

    db = str(tmp_path / "mlflow" / "mlflow.db")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_open_store, [db] * 3) == ["ok"] * 3
