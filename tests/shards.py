"""Materializing seed-shard partitions in tests: one helper instead of a pattern per file."""

from pathlib import Path
from typing import Any

import dagster as dg

from synth_assets.partitions import SEED_SHARDS

# the first shard of each built-in source at the default shard size
REF = "ref-n64-00000"
STDLIB = "stdlib-n64-00000"
GSM8K = "gsm8k-n64-00000"
RGYM = "rgym-n1-00000"


def shard_instance(*keys: str) -> dg.DagsterInstance:
    """An ephemeral instance that knows the given shards."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SEED_SHARDS, list(keys or (REF,)))
    return instance


def materialize_shard(
    assets: list, shard: str = REF, instance: dg.DagsterInstance | None = None, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """`dg.materialize` of one shard, registering it on the instance first."""
    instance = instance or dg.DagsterInstance.ephemeral()
    if shard not in instance.get_dynamic_partitions(SEED_SHARDS):
        instance.add_dynamic_partitions(SEED_SHARDS, [shard])
    return dg.materialize(assets, partition_key=shard, instance=instance, **kwargs)


def shard_file(data_dir: Path, asset: str, shard: str = REF) -> Path:
    """Where the IO manager keeps one shard of an asset."""
    return Path(data_dir) / asset / f"{shard}.parquet"


def write_shard(frame, data_dir: Path, asset: str, shard: str = REF) -> Path:
    """Write a test input where the IO manager reads that asset's shard."""
    path = shard_file(data_dir, asset, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path
