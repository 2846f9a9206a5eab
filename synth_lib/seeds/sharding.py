"""Seed shards: fixed-size slices of a seed source, named by a key that says where they came from.

A shard key is `<origin>-n<size>-<index>`, e.g. `ref-n64-00000` (rows 0-63 of the language
reference), `gsm8k-n64-00012` or `file_my_notes_jsonl_3fa2c1d0-n64-00002` (lines 129-192
of a file dropped into the seed folder; the 8 hex digits are a digest of the file's name).
The size is part of the key, so changing the configured shard size makes new shards
instead of silently re-cutting old ones, and a key alone is enough to re-read its rows on
any worker. Built-in origins: `ref` (language reference), `stdlib` (stdlib functions),
`gsm8k` (math with gold answers), `rgym` (reasoning-gym tasks: size = problems per task
and difficulty, index = seed offset).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

REFERENCE = "ref"
STDLIB = "stdlib"
GSM8K = "gsm8k"
REASONING_GYM = "rgym"
BUILTIN_ORIGINS = (REFERENCE, STDLIB, GSM8K, REASONING_GYM)
FILE_PREFIX = "file_"
DEFAULT_SHARD_ROWS = 64
DEFAULT_RGYM_SHARDS = 1
_KEY = re.compile(r"^(?P<origin>[a-z0-9_]+)-n(?P<size>\d+)-(?P<index>\d{5})$")


class ShardKeyError(ValueError):
    """A string that is not a shard key; the message says which form was expected."""


@dataclass(frozen=True, order=True)
class ShardKey:
    """One shard: its origin, the shard size it was cut with, and its position."""

    origin: str
    size: int
    index: int

    def __str__(self) -> str:
        return f"{self.origin}-n{self.size}-{self.index:05d}"

    @classmethod
    def parse(cls, key: str) -> ShardKey:
        match = _KEY.match(key)
        if not match:
            raise ShardKeyError(
                f"{key!r} is not a shard key (expected <origin>-n<size>-<index>, "
                "e.g. ref-n64-00000)"
            )
        return cls(match["origin"], int(match["size"]), int(match["index"]))

    @property
    def is_file(self) -> bool:
        return self.origin.startswith(FILE_PREFIX)

    @property
    def rows(self) -> range:
        """0-based positions of this shard's rows in its source."""
        return range(self.index * self.size, (self.index + 1) * self.size)

    @property
    def lines(self) -> range:
        """1-based line (or Parquet row) numbers of this shard in its file."""
        return range(self.index * self.size + 1, (self.index + 1) * self.size + 1)

    def take(self, items: Sequence) -> list:
        """This shard's slice of a source's rows."""
        return list(items[self.rows.start : self.rows.stop])


def shard_keys(origin: str, n_rows: int, size: int) -> list[str]:
    """Every shard of a source of `n_rows` rows cut `size` rows at a time."""
    if size <= 0:
        raise ValueError(f"shard size must be positive, got {size}")
    return [str(ShardKey(origin, size, i)) for i in range(-(-n_rows // size))]


def file_origin(name: str) -> str:
    """The origin of a seed file: its name made key-safe, plus a digest of the exact name."""
    slug = re.sub(r"[^a-z0-9]+", "_", Path(name).name.lower()).strip("_")[:40]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{FILE_PREFIX}{slug}_{digest}"


def file_shard_keys(name: str, n_records: int, size: int) -> list[str]:
    """Shards of a seed file with `n_records` lines (JSONL) or rows (Parquet)."""
    return shard_keys(file_origin(name), max(n_records, 1), size)


def shard_sort_key(key: str) -> tuple:
    """Processing order of shards: built-ins first, then files, each by index."""
    parsed = ShardKey.parse(key)
    rank = BUILTIN_ORIGINS.index(parsed.origin) if parsed.origin in BUILTIN_ORIGINS else 99
    return (rank, parsed.origin, parsed.index)


def default_shards(
    keys: Iterable[str], per_origin: int = 1, origins: Sequence[str] = BUILTIN_ORIGINS
) -> list[str]:
    """The first `per_origin` shards of each built-in origin: what `make run` materializes."""
    taken: dict[str, int] = {}
    chosen = []
    for key in sorted(keys, key=shard_sort_key):
        origin = ShardKey.parse(key).origin
        if origin in origins and taken.get(origin, 0) < per_origin:
            taken[origin] = taken.get(origin, 0) + 1
            chosen.append(key)
    return chosen


def shards_containing(
    data_dir: str | Path, ids: Iterable[str], column: str = "id"
) -> dict[str, list[tuple[str, str]]]:
    """Which (asset, shard) files hold each of `ids`, scanned lazily from `data_dir`.

    `column="root_seed_ids"` finds every row descending from the given seeds instead: the
    shards a rollback of those seeds must re-materialize.
    """
    wanted = list(dict.fromkeys(ids))
    found: dict[str, list[tuple[str, str]]] = {i: [] for i in wanted}
    for path in sorted(Path(data_dir).glob("*/*.parquet")):
        try:
            ShardKey.parse(path.stem)
        except ShardKeyError:
            continue
        frame = pl.scan_parquet(path)
        if column not in frame.collect_schema().names():
            continue
        values = pl.col(column)
        if column == "root_seed_ids":
            hits = frame.select(values.explode()).filter(values.is_in(wanted)).unique()
        else:
            hits = frame.select(values).filter(values.is_in(wanted)).unique()
        for value in hits.collect().get_column(column).to_list():
            found[value].append((path.parent.name, path.stem))
    return found
