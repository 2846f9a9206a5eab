"""The shard partitioning every per-row asset follows, in one place.

A per-row stage (it turns rows of a shard into rows of the same shard) declares
`**SHARDED` next to its other decorator arguments and reads its shard with `shard_of`:

    @dg.asset(group_name=..., kinds={"polars"}, code_version=..., **SHARDED, **GPU_STEP)
    def my_stage(context, my_upstream: pl.DataFrame): ...

Its inputs are then the same shard of its per-row upstreams, the IO manager writes one file
per asset and shard (`<asset>/<shard key>.parquet`), a backfill of N shards runs as runs
of one shard each (a run is the unit a worker takes and retries; one shard per run keeps
a failure to that shard), and a shard's failure costs only that shard. A stage that
needs every shard at once (dedup, decontamination) stays unpartitioned and reads its
partitioned inputs as a lazy scan over the materialized shards (see `curation.py`).

Partitions are added by sensors (`synth_jobs.sensors`) and by `make run`
(`synth_jobs.local_run`), never at import time.
"""

import warnings

import dagster as dg

from synth_lib.seeds.sharding import ShardKey

SEED_SHARDS = "seed_shards"
seed_shards = dg.DynamicPartitionsDefinition(name=SEED_SHARDS)

# BackfillPolicy on an asset is marked beta; it is the documented way to size backfill runs
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
SHARDED = {
    "partitions_def": seed_shards,
    "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
}


def shard_of(context: dg.AssetExecutionContext) -> ShardKey:
    """The shard a per-row asset is materializing."""
    return ShardKey.parse(context.partition_key)
