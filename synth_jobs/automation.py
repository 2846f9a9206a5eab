"""Jobs, sensors and the schedule that turn seed shards into runs.

- `new_seed_files` (sensor): registers the built-in shards once, then every new or changed
  file under SYNTH_SEED_DIR (a folder or an s3:// prefix) as shards, and requests a
  `synth_shards` run for each new shard. Partitions are only ever added here and by
  `make run`, never at import time.
- `new_benchmark_files` (sensor): a new file under SYNTH_BENCHMARK_DIR re-runs curation,
  so every shard is checked against it.
- `stale_shards_backfill` (schedule): runs for the shards that were never materialized or
  whose latest materialization failed, nothing else.
- Curation refreshes itself after new shards land (`AutomationCondition` on
  `decontaminated_mix`, see `synth_assets.curation`).
"""

from __future__ import annotations

import hashlib
import json
import os

import dagster as dg

from synth_assets.partitions import SEED_SHARDS, seed_shards
from synth_lib.seeds.catalogue import builtin_shards, file_shards
from synth_lib.seeds.seed_dir import list_seed_files

SHARD_JOB = "synth_shards"
CURATION_JOB = "synth_curation"
LEAF_ASSET = dg.AssetKey("training_mix")


def shard_job(selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        SHARD_JOB,
        selection=selection,
        partitions_def=seed_shards,
        description="Every per-row stage of one seed shard: seeds → synthetic stages → mix.",
    )


def curation_job(selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        CURATION_JOB,
        selection=selection,
        description="The cross-shard steps: dedup, decontamination, the failure log.",
    )


def register_shards(instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """Add the shards the instance does not know yet; returns the added ones, in order."""
    known = set(instance.get_dynamic_partitions(SEED_SHARDS))
    new = [k for k in dict.fromkeys(keys) if k not in known]
    if new:
        instance.add_dynamic_partitions(SEED_SHARDS, new)
    return new


def _file_marker(modified: float, size: int) -> str:
    return f"{modified:.3f}:{size}"


@dg.sensor(
    name="new_seed_files",
    job_name=SHARD_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Seed files dropped into SYNTH_SEED_DIR become shards, and runs for them.",
)
def new_seed_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {"builtin": False, "files": {}}
    known = set(context.instance.get_dynamic_partitions(SEED_SHARDS))
    keys: list[str] = []
    if not cursor["builtin"]:
        keys += [k for k in builtin_shards() if k not in known]
        cursor["builtin"] = True
    root = os.environ.get("SYNTH_SEED_DIR", "")
    changed = []
    for seed_file in list_seed_files(root) if root else []:
        marker = _file_marker(seed_file.modified, seed_file.size)
        if cursor["files"].get(seed_file.name) != marker:
            changed.append(seed_file)
            cursor["files"][seed_file.name] = marker
    fresh = []
    for name, shard_keys in file_shards(root, changed).items():
        new = [k for k in shard_keys if k not in known]
        context.log.info(f"{name}: {len(shard_keys)} shards, {len(new)} new")
        fresh += new
    keys += fresh
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=k, partition_key=k) for k in fresh],
        dynamic_partitions_requests=[seed_shards.build_add_request(keys)] if keys else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


@dg.sensor(
    name="new_benchmark_files",
    job_name=CURATION_JOB,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="A new benchmark file in SYNTH_BENCHMARK_DIR re-runs decontamination.",
)
def new_benchmark_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    root = os.environ.get("SYNTH_BENCHMARK_DIR", "")
    if not root:
        return dg.SkipReason("SYNTH_BENCHMARK_DIR is not set")
    listed = {f.name: _file_marker(f.modified, f.size) for f in list_seed_files(root)}
    if context.cursor and json.loads(context.cursor) == listed:
        return dg.SkipReason("no new or changed benchmark files")
    run_key = (
        "benchmarks-" + hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()[:16]
    )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key)] if listed else [],
        cursor=json.dumps(listed, sort_keys=True),
    )


def stale_shards(instance: dg.DagsterInstance, asset_key: dg.AssetKey = LEAF_ASSET) -> list[str]:
    """Registered shards whose leaf asset was never materialized or last failed."""
    keys = instance.get_dynamic_partitions(SEED_SHARDS)
    status = instance.get_status_by_partition(asset_key, keys, seed_shards) or {}
    todo = (None, dg.AssetPartitionStatus.FAILED)
    return [k for k in keys if status.get(k) in todo]


@dg.schedule(
    name="stale_shards_backfill",
    job_name=SHARD_JOB,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Nightly: a run for each shard never materialized or last failed, only those.",
)
def stale_shards_backfill(context: dg.ScheduleEvaluationContext):
    stale = stale_shards(context.instance)
    if not stale:
        return dg.SkipReason("every shard is materialized")
    tick = context.scheduled_execution_time.strftime("%Y%m%d%H%M")
    return [dg.RunRequest(run_key=f"{tick}-{k}", partition_key=k) for k in stale]
