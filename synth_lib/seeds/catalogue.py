"""Which shards exist: the built-in sources cut into fixed-size shards, and the seed folder's.

Counting a source's rows is cheap (the language reference and stdlib are in memory, GSM8K
and seed files are counted by lines), so the catalogue is recomputed by whoever registers
shards (a sensor tick, `make run`) rather than stored anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from synth_lib.seeds import sharding
from synth_lib.seeds.reference import reference_passages
from synth_lib.seeds.seed_dir import SeedFile, count_records, list_seed_files, local_copy
from synth_lib.seeds.stdlib_code import stdlib_functions


def shard_rows() -> int:
    """Rows per shard: SYNTH_SHARD_ROWS, else the default."""
    return int(os.environ.get("SYNTH_SHARD_ROWS", sharding.DEFAULT_SHARD_ROWS))


def builtin_shards(
    size: int | None = None, gsm8k_path: str | None = None, rgym_shards: int | None = None
) -> list[str]:
    """Shard keys of the built-in sources (GSM8K only when its file is there)."""
    size = size or shard_rows()
    gsm8k_path = os.environ.get("SYNTH_GSM8K_PATH", "") if gsm8k_path is None else gsm8k_path
    if rgym_shards is None:
        rgym_shards = int(os.environ.get("SYNTH_RGYM_SHARDS", sharding.DEFAULT_RGYM_SHARDS))
    keys = sharding.shard_keys(sharding.REFERENCE, len(list(reference_passages())), size)
    keys += sharding.shard_keys(sharding.STDLIB, len(list(stdlib_functions())), size)
    if gsm8k_path and os.path.isfile(gsm8k_path):
        keys += sharding.shard_keys(sharding.GSM8K, count_records(Path(gsm8k_path)), size)
    keys += [str(sharding.ShardKey(sharding.REASONING_GYM, 1, i)) for i in range(rgym_shards)]
    return keys


def file_shards(root: str, files: list[SeedFile] | None = None, size: int | None = None) -> dict:
    """{file name: its shard keys} for the seed files under `root`."""
    size = size or shard_rows()
    listed = list_seed_files(root) if files is None else files
    return {
        f.name: sharding.file_shard_keys(f.name, count_records(local_copy(root, f.name)), size)
        for f in listed
    }
