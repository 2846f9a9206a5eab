"""Curation over seed shards, one shard in memory at a time, with persisted per-shard work.

`curate_shards` gives the same outcome as `steps.curate_mix` over the concatenated shards
(`tests/test_shards_curation.py`), but a shard already seen is not hashed or scanned again:
- decontamination results are stored per shard and benchmark set (a new benchmark file
  changes the set's digest, so every shard is scanned against it once);
- near-duplicates come from the `BandStore`, which compares only a new shard's rows
  against the stored band keys of the others.
The anchor window and drift metrics still see every surviving row at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

from synth_lib.curation.band_store import BandStore
from synth_lib.curation.decontam import BenchmarkIndex, Match
from synth_lib.curation.steps import (
    NO_TEXT,
    CurationOutcome,
    CurationSettings,
    anchor_and_measure,
    in_dedup_scope,
    text_view,
    with_verdict,
)

MATCH_SCHEMA = {
    "id": pl.Utf8,
    "benchmark": pl.Utf8,
    "item_id": pl.Utf8,
    "method": pl.Utf8,
    "score": pl.Float64,
}


def benchmark_digest(spec: Mapping, paths: Sequence[str]) -> str:
    """Identity of a benchmark set: its settings and each file's name, size and mtime."""
    files = []
    for path in paths:
        stat = os.stat(path) if os.path.exists(path) else None
        files.append([path, stat.st_size if stat else -1, stat.st_mtime if stat else -1])
    blob = json.dumps({"spec": dict(spec), "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prepared(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    frame = frame.with_columns(text_view(frame).alias("_text"))
    return frame, frame.get_column("_text").str.strip_chars() == ""


def _shard_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


class LeakCache:
    """Per-shard decontamination matches for one benchmark set."""

    def __init__(self, root: Path, index: BenchmarkIndex) -> None:
        self.root, self.index = root, index

    def matches(self, shard: str, frame: pl.DataFrame) -> list[Match | None]:
        """The benchmark match of each row of `frame` (cached by the shard's ids)."""
        ids = frame.get_column("id").to_list()
        path = self.root / f"{shard}.{_shard_digest(ids)}.parquet"
        if path.is_file():
            stored = {r["id"]: r for r in pl.read_parquet(path).iter_rows(named=True)}
            return [_match(stored.get(i)) for i in ids]
        found = self.index.scan(frame.get_column("_text").to_list())
        rows = [
            {"id": i, **({k: getattr(m, k) for k in MATCH_SCHEMA if k != "id"} if m else {})}
            for i, m in zip(ids, found, strict=True)
            if m is not None
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pl.DataFrame(rows, schema=MATCH_SCHEMA).write_parquet(staging)
        os.replace(staging, path)
        return found


def _match(row: Mapping | None) -> Match | None:
    if row is None:
        return None
    return Match(row["benchmark"], row["item_id"], row["method"], row["score"])


def curate_shards(
    shards: Mapping[str, Callable[[], pl.DataFrame]],
    index: BenchmarkIndex,
    index_digest: str,
    settings: CurationSettings,
    root: str | Path,
) -> tuple[CurationOutcome, dict[str, int]]:
    """Curate every shard (name → loader); returns the outcome and what was recomputed."""
    root = Path(root)
    leaks = LeakCache(root / "decontam" / index_digest, index)
    store = BandStore(root / "dedup" / index_digest, settings.dedup)
    # shards gone from the mix leave the index, so its stop list counts only these rows
    resigned = len(store.retain(list(shards)))
    work = {
        "shards": len(shards),
        "shards_indexed": 0,
        "rows_indexed": 0,
        "shards_resigned": resigned,
    }
    for name, load in shards.items():
        frame, blank = _prepared(load())
        survivors = frame.filter(~blank)
        matches = leaks.matches(name, survivors)
        clean = survivors.filter(pl.Series([m is None for m in matches], dtype=pl.Boolean))
        clean = clean.filter(in_dedup_scope(clean))
        stats = store.add(
            name,
            clean.get_column("id").to_list(),
            clean.get_column("_text").to_list(),
            clean.get_column("is_synthetic").fill_null(True).to_list(),
        )
        if not stats.cached:
            work["shards_indexed"] += 1
            work["rows_indexed"] += stats.rows
            work["shards_resigned"] += len(stats.resigned)
    _, dedup, offsets = store.result(only=list(shards))
    parts: dict[str, list[pl.DataFrame]] = {"empty": [], "leaked": [], "dup": [], "rest": []}
    all_matches: list[Match | None] = []
    for name, load in shards.items():
        frame, blank = _prepared(load())
        empty = frame.filter(blank)
        parts["empty"].append(
            with_verdict(empty, "has_text", False, None, [NO_TEXT] * empty.height)
        )
        survivors = frame.filter(~blank)
        matches = leaks.matches(name, survivors)
        all_matches += matches
        leaked = pl.Series([m is not None for m in matches], dtype=pl.Boolean)
        found = [m for m in matches if m]
        parts["leaked"].append(
            with_verdict(
                survivors.filter(leaked),
                "decontam",
                False,
                [m.score for m in found],
                [m.reason for m in found],
            )
        )
        clean = with_verdict(survivors.filter(~leaked), "decontam", True, None, None)
        scope = in_dedup_scope(clean)
        pairs, clean = clean.filter(~scope), clean.filter(scope)
        rows = slice(offsets[name], offsets[name] + clean.height)
        is_kept = pl.Series(dedup.kept[rows], dtype=pl.Boolean)
        reasons = [r for r in dedup.reason[rows] if r]
        parts["dup"].append(with_verdict(clean.filter(~is_kept), "dedup", False, None, reasons))
        kept = pl.concat([clean.filter(is_kept), pairs], how="vertical_relaxed")
        parts["rest"].append(with_verdict(kept, "dedup", True, None, None))
    joined = {k: _concat(v) for k, v in parts.items()}
    outcome = anchor_and_measure(
        joined["rest"],
        settings,
        joined["empty"],
        joined["leaked"],
        joined["dup"],
        all_matches,
        dedup,
    )
    return outcome, work


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
