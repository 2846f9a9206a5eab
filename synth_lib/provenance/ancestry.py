"""Row ancestry across every stage's Parquet output: "which seed and which model made this row"."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

_COLUMNS = ["id", "stage", "parent_ids", "root_seed_ids", "generator", "source", "is_synthetic"]


def load_index(paths: Iterable[str | Path]) -> dict[str, dict[str, Any]]:
    """id → provenance of every row in the given Parquet files (files without ids are skipped)."""
    index: dict[str, dict[str, Any]] = {}
    for path in paths:
        schema = pl.read_parquet_schema(path)
        if not set(_COLUMNS) <= set(schema):
            continue
        for row in pl.read_parquet(path, columns=_COLUMNS).iter_rows(named=True):
            index.setdefault(row["id"], row)
    return index


def parquet_files(root: str | Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.parquet") if not p.name.startswith("."))


def ancestry(
    row_id: str,
    index: dict[str, dict[str, Any]],
    removals: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Breadth-first hops from `row_id` back to its seeds, one object per row visited.

    `removals` (id → rollback id) marks each hop a rollback removed with `removed_by`; a
    removed row found nowhere else is one hop that says only which rollback removed it.
    """
    removals = removals or {}
    if row_id not in index:
        if row_id in removals:
            return [{"id": row_id, "removed_by": removals[row_id], "found": False}]
        raise KeyError(f"row {row_id} not found in any materialized asset")
    hops: list[dict[str, Any]] = []
    queue, seen = deque([row_id]), {row_id}
    while queue:
        current = index.get(queue.popleft())
        if current is None:
            continue
        generator = current["generator"] or {}
        hops.append(
            {
                "stage": current["stage"],
                "id": current["id"],
                "is_seed": not current["parent_ids"],
                "generator_model": generator.get("model"),
                "model_revision": generator.get("revision"),
                "template": generator.get("template"),
                "template_hash": generator.get("template_hash"),
                "source": current["source"],
                "parent_ids": current["parent_ids"],
                "removed_by": removals.get(current["id"]),
            }
        )
        for parent in current["parent_ids"]:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return hops
