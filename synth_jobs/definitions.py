"""The code location: every asset, check, job, sensor and schedule, with the profile's resources."""

import os

import dagster as dg

from resources.parquet_io import lineage_failure_hook
from synth_assets import audit, code, curation, engines, mix, reasoning, seeds, text
from synth_jobs.automation import (
    curation_job,
    new_benchmark_files,
    new_seed_files,
    shard_job,
    stale_shards_backfill,
)
from synth_jobs.fleet import fleet_job
from synth_jobs.lineage_sensors import openlineage_run_failures
from synth_jobs.profiles import local_resources, production_resources

ASSET_MODULES = [seeds, text, code, reasoning, mix, curation, engines, audit]
all_assets = [
    a.with_hooks({lineage_failure_hook}) if isinstance(a, dg.AssetsDefinition) else a
    for a in dg.load_assets_from_modules(ASSET_MODULES)
]
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

# every asset not cut by seed shard sees all shards at once: those run in synth_curation
CROSS_SHARD = dg.AssetSelection.assets(
    *[a for a in all_assets if isinstance(a, dg.AssetsDefinition) and a.partitions_def is None]
)
synth_shards = shard_job(dg.AssetSelection.all() - CROSS_SHARD)
synth_curation = curation_job(CROSS_SHARD)
synth_shards_fleet = fleet_job(dg.AssetSelection.all() - CROSS_SHARD)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[synth_shards, synth_curation, synth_shards_fleet],
    schedules=[stale_shards_backfill],
    sensors=[new_seed_files, new_benchmark_files, openlineage_run_failures],
    resources=production_resources()
    if os.environ.get("SYNTH_PROFILE") == "production"
    else local_resources(),
)
