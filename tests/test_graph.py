"""The whole graph on an ephemeral instance: determinism, caching, lineage, Definitions."""

import json
import os
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from synth_jobs.definitions import CROSS_SHARD, all_assets, all_checks, defs, synth_shards
from synth_jobs.profiles import local_resources
from tests import environment
from tests.dagster_results import materialization_metadata
from tests.shards import materialize_shard, shard_file

pytestmark = pytest.mark.slow

RUN_CONFIG = {"ops": {"rephrasings": {"config": {"max_seeds": 6, "max_tokens": 96}}}}
TEXT, CODE, MATH = "ref-n400-00000", "stdlib-n64-00000", "gsm8k-n200-00000"
SHARDS = [TEXT, CODE, MATH, "rgym-n1-00000"]


def _materialize(home, selection=None, gsm8k=None, shards=SHARDS, instance=None):
    """One run per shard, then (whole graph only) the cross-shard run: {shard or "all": result}."""
    config = json.loads(json.dumps(RUN_CONFIG))
    if gsm8k:
        config["ops"]["seeds"] = {"config": {"gsm8k_path": str(gsm8k)}}
    instance = instance or dg.DagsterInstance.ephemeral()
    sharded = [*all_assets, *all_checks]
    results = {
        shard: materialize_shard(
            sharded,
            shard,
            instance,
            selection=selection or synth_shards.selection,
            resources=local_resources(home),
            run_config=config
            if selection is None or "seeds" in str(selection)
            else {"ops": {k: v for k, v in config["ops"].items() if k != "seeds"}},
        )
        for shard in shards
    }
    if selection is None:
        results["all"] = dg.materialize(
            sharded,
            selection=CROSS_SHARD,
            resources=local_resources(home),
            instance=instance,
        )
    return results


def _shards(home, asset):
    return pl.concat(
        [pl.read_parquet(p) for p in sorted((home / "data" / asset).glob("*.parquet"))],
        how="diagonal_relaxed",
    )


@pytest.fixture(scope="module")
def graph(tmp_path_factory, smoke_models_dir):
    os.environ["SYNTH_MODELS_DIR"] = str(smoke_models_dir)
    home = tmp_path_factory.mktemp("graph")
    gsm8k = os.environ.get("SYNTH_GSM8K_PATH") or None
    results = _materialize(home, gsm8k=gsm8k)
    return home, results, gsm8k


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("synth_shards")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"text_seeds", "code_seeds", "math_seeds", "rephrasings", "training_mix"} <= keys
    assert job.partitions_def.name == "seed_shards"
    curation = defs.resolve_job_def("synth_curation")
    assert "decontaminated_mix" in {
        k.to_user_string() for k in curation.asset_layer.executable_asset_keys
    }
    assert defs.resolve_schedule_def("stale_shards_backfill").default_status.value == "STOPPED"
    assert defs.resolve_sensor_def("new_seed_files").default_status.value == "STOPPED"


def test_generating_assets_take_a_gpu_slot_and_retry_with_jitter():
    graph = defs.resolve_asset_graph()
    generating = ["rephrasings", "code_problems", "verified_code", "cot_traces"]
    generating += ["preference_pairs", "debate_verdicts"]
    for key in generating:
        node = graph.get(dg.AssetKey(key))
        op = node.assets_def.op
        assert node.pools == {"gpu"}, key
        k8s = json.loads(op.tags["dagster-k8s/config"])
        limits = k8s["container_config"]["resources"]["limits"]
        assert limits == {"nvidia.com/gpu": "1"}, key
        assert op.retry_policy.backoff == dg.Backoff.EXPONENTIAL, key
        assert op.retry_policy.jitter == dg.Jitter.PLUS_MINUS, key


def test_whole_graph_materializes(graph):
    home, results, _ = graph
    assert all(r.success for r in results.values())
    result = results[TEXT]
    assert materialization_metadata(result, "text_seeds")["dagster/row_count"] > 300
    assert materialization_metadata(results[CODE], "code_seeds")["dagster/row_count"] > 50
    rephrase_meta = materialization_metadata(result, "rephrasings")
    assert rephrase_meta["dagster/row_count"] + rephrase_meta["generation_failures"] == 24
    assert rephrase_meta["engine_requests"] == 24 and rephrase_meta["smoke_model"] is True
    failures = pl.read_parquet(home / "data" / "generation_failures.parquet")
    rephrase_failures = failures.filter(pl.col("stage") == "rephrasings")
    assert rephrase_failures.height == rephrase_meta["generation_failures"]
    assert set(rephrase_failures["finish_reason"]) <= {"length", "error", "content_filter"}
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["training_mix_provenance_complete"].passed
    assert checks["training_mix_shards_verified"].passed
    mix = pl.read_parquet(shard_file(home / "data", "training_mix", TEXT))
    smoke_rows = mix.filter(pl.col("generator").struct.field("is_smoke_model").fill_null(False))
    # counted on the written rows, a warning only (test_mix shows it firing on smoke rows)
    smoke_check = checks["training_mix_not_smoke_model"]
    assert smoke_check.severity == dg.AssetCheckSeverity.WARN
    assert smoke_check.metadata["smoke_model_rows"].value == smoke_rows.height


def test_math_seeds_come_from_gsm8k(graph):
    _, results, gsm8k = graph
    if not gsm8k:
        environment.missing("gsm8k", "SYNTH_GSM8K_PATH is not set: the graph ran without math")
    assert materialization_metadata(results[MATH], "math_seeds")["dagster/row_count"] == 200


def test_rerun_is_all_cache_hits_and_ids_are_stable(graph):
    home, results, _ = graph
    # transient failures (e.g. a smoke-model answer with a NUL, rejected by validation) are
    # never cached: the re-run sends exactly those again, every other request is a cache hit
    resent = materialization_metadata(results[TEXT], "rephrasings")["generation_failures_retryable"]
    before = pl.read_parquet(shard_file(home / "data", "rephrasings", TEXT))
    again = _materialize(home, selection=["rephrasings"], shards=[TEXT])
    meta = materialization_metadata(again[TEXT], "rephrasings")
    assert meta["engine_requests"] == resent and meta["cache_hits"] == 24 - resent
    after = pl.read_parquet(shard_file(home / "data", "rephrasings", TEXT))
    assert before.height > 0, "the smoke model should complete some rephrasings"
    kept = after.filter(pl.col("id").is_in(before["id"].implode()))
    assert before["id"].to_list() == kept["id"].to_list()
    assert after.height - kept.height <= resent, "new rows come only from re-sent requests"
    assert before["run_id"][0] != after["run_id"][0]


def test_ids_identical_across_independent_homes(graph, tmp_path):
    home, _, gsm8k = graph
    results = _materialize(tmp_path / "second", gsm8k=gsm8k)
    assert all(r.success for r in results.values())
    for name in ("text_seeds", "code_seeds", "math_seeds", "rephrasings", "training_mix"):
        first = _shards(home, name)["id"].sort().to_list()
        second = _shards(tmp_path / "second", name)["id"]
        assert first == second.sort().to_list(), name
    first = pl.read_parquet(home / "data" / "decontaminated_mix.parquet")["id"].sort()
    second = pl.read_parquet(tmp_path / "second" / "data" / "decontaminated_mix.parquet")["id"]
    assert first.to_list() == second.sort().to_list()


def test_lineage_cli_ends_at_seeds(graph):
    home, _, _ = graph
    mix = _shards(home, "training_mix")
    rephrased = pl.read_parquet(shard_file(home / "data", "rephrasings", TEXT))
    row_ids = mix["id"].head(3).to_list() + rephrased["id"].head(1).to_list()
    for row_id in row_ids:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "synth_lib.commands.cli",
                "lineage",
                row_id,
                "--data-dir",
                str(home / "data"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        hops = json.loads(out.stdout)
        assert hops[0]["id"] == row_id
        assert hops[-1]["is_seed"] and hops[-1]["source"]["license"]
        if hops[0]["stage"] == "rephrasings":
            assert hops[0]["generator_model"] and hops[0]["template_hash"]
            assert hops[-1]["stage"] == "text_seeds"
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "synth_lib.commands.cli",
            "lineage",
            "nope",
            "--data-dir",
            str(home / "data"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "not found" in missing.stderr
