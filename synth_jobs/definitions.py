"""The code location: every asset, check, job and schedule, with the profile's resources."""

import os

import dagster as dg

from resources.parquet_io import lineage_failure_hook
from synth_assets import code, curation, engines, mix, reasoning, seeds, text
from synth_jobs.profiles import local_resources, production_resources

ASSET_MODULES = [seeds, text, code, reasoning, mix, curation, engines]
all_assets = [
    a.with_hooks({lineage_failure_hook}) if isinstance(a, dg.AssetsDefinition) else a
    for a in dg.load_assets_from_modules(ASSET_MODULES)
]
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

synth_all = dg.define_asset_job(
    "synth_all",
    selection=dg.AssetSelection.all(),
    description="Materialize the whole graph: seeds → synthetic stages → mix → curation.",
)

daily_refresh = dg.ScheduleDefinition(
    name="synth_all_daily",
    job=synth_all,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-materialize the whole graph nightly (off by default).",
)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[synth_all],
    schedules=[daily_refresh],
    resources=production_resources()
    if os.environ.get("SYNTH_PROFILE") == "production"
    else local_resources(),
)
