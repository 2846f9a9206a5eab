"""Curation over seed shards, one shard in memory at a time, with persisted per-shard work.

`curate_shards` gives the same outcome as `steps.curate_mix` over the concatenated shards
(`tests/test_shards_curation.py`), but a shard already seen is not hashed or scanned again:
- decontamination results are stored per shard and benchmark set (a new benchmark file
  changes the set's digest, so every shard is scanned against it once);
- near-duplicates come from the `BandStore`, which compares only a new shard's rows
  against the stored band keys of the others;
- the anchor window judges a shard's anchored samples against that shard's human rows,
  and its result is stored per shard (`AnchorCache`), so an unchanged shard is not embedded
  again.
The second pass writes each shard's curated and removed rows to staging files, so no step
holds more than one shard's rows: the outcome's frames are lazy scans of those files, and
the drift metrics are summed per shard (anchor coverage) or computed on a bounded sample
of rows chosen by id (`drift.DriftSample`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from synth_lib.curation.anchor_filter import Embedder, MiniLMEmbedder
from synth_lib.curation.band_store import BandStore
from synth_lib.curation.decontam import BenchmarkIndex, Match
from synth_lib.curation.dedup import DedupResult
from synth_lib.curation.steps import (
    NO_TEXT,
    CurationOutcome,
    CurationSettings,
    Judge,
    Measure,
    ShardAnchors,
    anchor_shard,
    foreign_roots,
    in_dedup_scope,
    judge_anchors,
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


ANCHOR_SCHEMA = {
    "id": pl.Utf8,
    "best": pl.Float32,
    "nearest": pl.Utf8,
    "kept": pl.Boolean,
    "reason": pl.Utf8,
    "anchors": pl.Int64,
    "covered": pl.Int64,
}


class AnchorCache:
    """Per-shard anchor window results, so a shard whose rows are unchanged is not embedded
    again. A result is keyed by the ids of the shard's human rows and anchored samples that
    reach the window (a duplicate removed in another shard changes them) and lives under a
    folder named by the window settings and the embedder."""

    def __init__(self, root: Path, settings: CurationSettings, embedder: Embedder) -> None:
        spec = {
            "low": settings.anchor_low,
            "high": settings.anchor_high,
            "coverage_cosine": settings.coverage_cosine,
            "embedder": type(embedder).__qualname__,
        }
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self.root, self.settings, self.embedder = root / digest, settings, embedder

    def judge(self, shard: str) -> Judge:
        """The judge of one shard's rows: the stored result, or embed, judge and store."""

        def judge(humans: pl.DataFrame, samples: pl.DataFrame, own: int) -> ShardAnchors:
            key = [humans.get_column("id").to_list(), own, samples.get_column("id").to_list()]
            digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
            path = self.root / f"{shard}.{digest}.parquet"
            if path.is_file():
                return _stored_anchors(pl.read_parquet(path))
            found = judge_anchors(humans, samples, own, self.settings, self.embedder)
            self._store(path, shard, found)
            return found

        return judge

    def _store(self, path: Path, shard: str, found: ShardAnchors) -> None:
        n = len(found.ids)
        frame = pl.DataFrame(
            {
                "id": found.ids,
                "best": found.best,
                "nearest": found.nearest,
                "kept": found.kept,
                "reason": found.reason,
                "anchors": [found.anchors] * n,
                "covered": [found.covered] * n,
            },
            schema=ANCHOR_SCHEMA,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.write_parquet(staging)
        os.replace(staging, path)
        # the shard's earlier results are superseded: only its latest rows are ever asked for
        for old in path.parent.glob(f"{glob.escape(shard)}.*.parquet"):
            if old != path and old.name.count(".") == 2:
                old.unlink(missing_ok=True)


def _stored_anchors(frame: pl.DataFrame) -> ShardAnchors:
    return ShardAnchors(
        ids=frame.get_column("id").to_list(),
        best=frame.get_column("best").to_numpy(),
        nearest=frame.get_column("nearest").to_list(),
        kept=frame.get_column("kept").to_numpy(),
        reason=frame.get_column("reason").to_list(),
        anchors=int(frame.get_column("anchors")[0]),
        covered=int(frame.get_column("covered")[0]),
    )


def fresh_staging(parent: str | Path, name: str) -> Path:
    """An empty folder `parent/name` for one run's staged rows; the folders of earlier runs
    under `parent` are removed (their output was written when their run ended)."""
    parent = Path(parent)
    if parent.is_dir():
        for old in parent.iterdir():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    target = parent / name
    target.mkdir(parents=True)
    return target


def curate_shards(
    shards: Mapping[str, Callable[[], pl.DataFrame]],
    index: BenchmarkIndex,
    index_digest: str,
    settings: CurationSettings,
    root: str | Path,
    staging: str | Path,
    embedder: Embedder | None = None,
) -> tuple[CurationOutcome, dict[str, int]]:
    """Curate every shard (name → loader); returns the outcome and what was recomputed.

    One shard is in memory at a time. Its curated rows and its removed rows are written to
    files under `staging` (an empty folder that must outlive the outcome: the outcome's
    frames are lazy scans of those files).
    """
    root, staging = Path(root), Path(staging)
    leaks = LeakCache(root / "decontam" / index_digest, index)
    store = BandStore(root / "dedup" / index_digest, settings.dedup)
    anchors = AnchorCache(root / "anchors", settings, embedder or MiniLMEmbedder())
    # shards gone from the mix leave the index, so its stop list counts only these rows
    resigned = len(store.retain(list(shards)))
    work = {
        "shards": len(shards),
        "shards_indexed": 0,
        "rows_indexed": 0,
        "shards_resigned": resigned,
    }
    missing: set[str] = set()
    for name, load in shards.items():
        frame, blank = _prepared(load())
        survivors = frame.filter(~blank)
        missing |= foreign_roots(survivors, settings, frame.get_column("id").to_list())
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

    def steps(name: str, frame: pl.DataFrame, blank: pl.Series) -> _ShardSteps:
        return _shard_steps(
            frame, blank, leaks.matches(name, frame.filter(~blank)), dedup, offsets[name]
        )

    # root seeds that live in another shard than their samples: a small extra sweep
    pool = [pl.DataFrame(schema={"id": pl.Utf8, "_text": pl.Utf8})]
    for name, load in shards.items() if missing else ():
        survived = steps(name, *_prepared(load())).survived
        humans = survived.filter(~survived.get_column("is_synthetic").fill_null(True))
        pool.append(humans.filter(pl.col("id").is_in(list(missing))).select("id", "_text"))
    foreign = pl.concat(pool)
    measure = Measure(settings)
    removed = dict.fromkeys(["has_text", "decontam", "dedup", "anchor_window"], 0)
    found: list[Match] = []
    written: dict[str, list[Path]] = {"kept": [], "rejected": []}
    for position, (name, load) in enumerate(shards.items()):
        frame, blank = _prepared(load())
        done = steps(name, frame, blank)
        found += done.found
        roots = foreign_roots(done.survived, settings, frame.get_column("id").to_list())
        shard = anchor_shard(
            done.survived,
            settings,
            anchors.judge(name),
            foreign.filter(pl.col("id").is_in(list(roots))),
        )
        measure.add(shard)
        removed_rows = {**done.removed, "anchor_window": shard.drifted}
        for step, part in removed_rows.items():
            removed[step] += part.height
        parts = {
            "kept": shard.kept,
            "rejected": pl.concat(list(removed_rows.values()), how="vertical_relaxed"),
        }
        for kind, part in parts.items():
            path = staging / kind / f"{position:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.drop("_text").write_parquet(path)
            written[kind].append(path)
    outcome = CurationOutcome(
        kept=_scan(written["kept"]),
        rejected=_scan(written["rejected"]),
        removed=removed,
        matches=found,
        dedup=dedup,
        anchors=measure.summary,
        drift=measure.drift(),
    )
    return outcome, work


@dataclass(frozen=True)
class _ShardSteps:
    """One shard through the steps before the anchor window."""

    survived: pl.DataFrame
    removed: dict[str, pl.DataFrame]
    found: list[Match]


def _shard_steps(
    frame: pl.DataFrame,
    blank: pl.Series,
    matches: Sequence[Match | None],
    dedup: DedupResult,
    offset: int,
) -> _ShardSteps:
    """No text, decontamination and the shard's slice of the cross-shard dedup result."""
    empty = frame.filter(blank)
    survivors = frame.filter(~blank)
    leaked = pl.Series([m is not None for m in matches], dtype=pl.Boolean)
    found = [m for m in matches if m]
    clean = with_verdict(survivors.filter(~leaked), "decontam", True, None, None)
    scope = in_dedup_scope(clean)
    pairs, clean = clean.filter(~scope), clean.filter(scope)
    rows = slice(offset, offset + clean.height)
    is_kept = pl.Series(dedup.kept[rows], dtype=pl.Boolean)
    reasons = [r for r in dedup.reason[rows] if r]
    kept = pl.concat([clean.filter(is_kept), pairs], how="vertical_relaxed")
    removed = {
        "has_text": with_verdict(empty, "has_text", False, None, [NO_TEXT] * empty.height),
        "decontam": with_verdict(
            survivors.filter(leaked),
            "decontam",
            False,
            [m.score for m in found],
            [m.reason for m in found],
        ),
        "dedup": with_verdict(clean.filter(~is_kept), "dedup", False, None, reasons),
    }
    return _ShardSteps(with_verdict(kept, "dedup", True, None, None), removed, found)


def _scan(paths: Sequence[Path]) -> pl.LazyFrame:
    """The staged files in order, as one lazy frame (columns unified as `pl.concat` does)."""
    scans = [pl.scan_parquet(path) for path in paths]
    return pl.concat(scans, how="diagonal_relaxed") if scans else pl.LazyFrame()
