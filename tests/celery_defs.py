"""A small code location for the Celery test: real seed shards and a slow per-shard step.

Workers import it (`-m tests.celery_defs`), so it reads its settings from the environment:
SYNTH_HOME (data), HOLD_SHARD / HOLD_S (which shard's step sleeps, so a worker can be killed
in the middle of it).
"""

import os
import time

import dagster as dg
import polars as pl

from synth_assets import seeds
from synth_assets.common import frame_output
from synth_assets.partitions import SHARDED
from synth_jobs.fleet import fleet_job
from synth_jobs.profiles import local_resources


@dg.asset(**SHARDED)
def passage_lengths(context: dg.AssetExecutionContext, text_seeds: pl.DataFrame):
    """Per seed passage, its length; the chosen shard's step takes HOLD_S seconds."""
    if context.partition_key == os.environ.get("HOLD_SHARD"):
        time.sleep(float(os.environ.get("HOLD_S", "0")))
    frame = text_seeds.select("id", pl.col("text").str.len_chars().alias("chars"))
    return frame_output(frame, ["id", "chars"], {"worker_pid": os.getpid()})


ASSETS = [seeds.seeds, passage_lengths]
SELECTION = dg.AssetSelection.assets(
    "text_seeds", "code_seeds", "math_seeds", "seed_quarantine", "passage_lengths"
)
fleet = fleet_job(SELECTION)
local = dg.define_asset_job("local", selection=SELECTION, partitions_def=SHARDED["partitions_def"])
defs = dg.Definitions(assets=ASSETS, jobs=[fleet, local], resources=local_resources())
