"""Rollback: "remove everything that came from seed S / model M@rev / template T@hash".

A rollback is an entry in an append-only ledger (JSON lines under `$SYNTH_HOME/audit`):
what was rolled back, why, when, by which OS user, and which assets and shards held its
descendants when it was recorded. A later line may lift it. The mix, curation and the
export read the active entries on every run and drop matching rows, so a rolled-back
model or template stays out of future runs too. Ids are content-addressed, so dropping
rows never changes the id (content hash) of any other row.

A row is a descendant when it matches the target itself (its own seed id, its generator's
model + revision, its template + hash) or any of its ancestors does; ancestry is followed
through `parent_ids` across every frame given, and through the ids the entry recorded.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from synth_lib.provenance.hashing import sha256_hex
from synth_lib.seeds.sharding import ShardKey, ShardKeyError

TargetKind = Literal["seed", "model", "template"]
LEDGER_NAME = "rollbacks.jsonl"
# Assets that read the ledger: re-materializing them is what applies a rollback. The
# partitioned ones (by seed shard) need only the shards that held descendants.
READERS = ("rollbacks", "training_mix", "decontaminated_mix", "dataset_export")
PARTITIONED_READERS = ("training_mix",)
_PROVENANCE = ["id", "parent_ids", "root_seed_ids", "generator"]


@dataclass(frozen=True)
class Target:
    """What is rolled back: a seed id, a model `NAME@REVISION` or a template `NAME@HASH`."""

    kind: TargetKind
    name: str
    version: str = ""

    @classmethod
    def parse(cls, kind: TargetKind, value: str) -> Target:
        if kind == "seed":
            if not value.strip():
                raise ValueError("--seed needs a seed row id")
            return cls("seed", value.strip())
        name, sep, version = value.rpartition("@")
        if not sep or not name or not version:
            what = "NAME@REVISION" if kind == "model" else "NAME@HASH"
            raise ValueError(f"--{kind} must be {what}, got {value!r}")
        return cls(kind, name, version)

    def label(self) -> str:
        return f"{self.kind} {self.name}@{self.version}" if self.version else f"seed {self.name}"

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether this row itself is the target (not counting its ancestors)."""
        if self.kind == "seed":
            return row["id"] == self.name or self.name in (row.get("root_seed_ids") or [])
        generator = row.get("generator") or {}
        if self.kind == "model":
            revision = generator.get("revision") or ""
            # a watermarked run of the same weights records "<revision>+wm.<key id>"
            same = revision == self.version or revision.startswith(self.version + "+")
            return generator.get("model") == self.name and same
        template_hash = generator.get("template_hash") or ""
        return generator.get("template") == self.name and template_hash.startswith(self.version)


@dataclass
class Entry:
    """One rollback as recorded, and whether it has been lifted."""

    id: str
    target: Target
    reason: str
    user: str
    created_at: str
    affected: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_ids: list[str] = field(default_factory=list)
    lifted_at: str | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    def summary(self) -> dict[str, Any]:
        """The entry without its id list (what the CLI and the asset show)."""
        out = asdict(self)
        out["target"] = self.target.label()
        out["removed_rows"] = len(out.pop("removed_ids"))
        out["active"] = self.active
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# ---- which rows, assets and shards -------------------------------------------------------


def asset_and_shard(path: Path, data_dir: Path) -> tuple[str, str | None]:
    """`<asset>.parquet` → (asset, None); `<asset>/<shard...>.parquet` → (asset, shard key).

    This is the IO manager's layout (one file per asset, one per partition), so a
    partitioned asset's shards are its partition keys.
    """
    parts = path.relative_to(data_dir).with_suffix("").parts
    return parts[0], ("/".join(parts[1:]) or None)


def scan(data_dir: str | Path) -> list[tuple[str, str | None, pl.DataFrame]]:
    """(asset, shard, provenance columns) of every materialized file that has ids."""
    data_dir = Path(data_dir)
    out = []
    for path in sorted(data_dir.rglob("*.parquet")):
        if any(part.startswith(".") for part in path.relative_to(data_dir).parts):
            continue
        if not set(_PROVENANCE) <= set(pl.read_parquet_schema(path)):
            continue
        asset, shard = asset_and_shard(path, data_dir)
        out.append((asset, shard, pl.read_parquet(path, columns=_PROVENANCE)))
    return out


def _rows(frames: Iterable[pl.DataFrame]) -> list[dict[str, Any]]:
    """Provenance of every row of the frames that have it (others, e.g. verdict logs, skipped)."""
    frames = [f for f in frames if set(_PROVENANCE) <= set(f.columns)]
    return [row for f in frames for row in f.select(_PROVENANCE).iter_rows(named=True)]


def _children(rows: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    children: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        for parent in row["parent_ids"] or []:
            children[parent].add(row["id"])
    return children


def descendants(target: Target, frames: Iterable[pl.DataFrame]) -> set[str]:
    """Ids of every row that is the target or descends from it, across all `frames`."""
    rows = _rows(frames)
    return _closure({row["id"] for row in rows if target.matches(row)}, _children(rows))


def _closure(start: set[str], children: Mapping[str, set[str]]) -> set[str]:
    found, stack = set(start), list(start)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def affected_partitions(
    scanned: Sequence[tuple[str, str | None, pl.DataFrame]], removed: set[str]
) -> dict[str, dict[str, Any]]:
    """Per asset: descendant rows and the shards (partitions, mix shard files) they live in.

    The one place that maps removed ids to what must be re-materialized.
    """
    out: dict[str, dict[str, Any]] = {}
    for asset, shard, frame in scanned:
        rows = frame.filter(pl.col("id").is_in(list(removed))).height if removed else 0
        if not rows:
            continue
        entry = out.setdefault(asset, {"rows": 0, "shards": []})
        entry["rows"] += rows
        if shard is not None:
            entry["shards"].append(shard)
    return out


def _is_shard_key(name: str) -> bool:
    try:
        ShardKey.parse(name)
    except ShardKeyError:
        return False
    return True


def rematerialization(affected: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str] | None]:
    """Reader asset → the seed shards to re-materialize (None: the whole asset).

    A file's first folder below its asset is its seed shard when it is named like one
    (`<asset>/<shard>.parquet`, `training_mix_shards/<shard>/part-*.parquet`). Every row
    lives in its seed's shard, so those shards are all a partitioned reader needs (none:
    nothing of it to redo); the unpartitioned readers re-materialize whole.
    """
    keys = {str(s).split("/")[0] for found in affected.values() for s in found["shards"]}
    shards = sorted(k for k in keys if _is_shard_key(k))
    return {asset: shards if asset in PARTITIONED_READERS else None for asset in READERS}


def plan(target: Target, data_dir: str | Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """What a rollback of `target` would remove now: per-asset counts/shards, and the ids."""
    scanned = scan(data_dir)
    removed = descendants(target, (frame for _, _, frame in scanned))
    return affected_partitions(scanned, removed), removed


# ---- the ledger ---------------------------------------------------------------------------


def ledger_path(home: str | Path) -> Path:
    return Path(home, "audit", LEDGER_NAME)


def _append(home: str | Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line under an exclusive lock, flushed to disk before returning."""
    path = ledger_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_entries(home: str | Path) -> list[Entry]:
    """Every rollback in the ledger, oldest first, with lifts applied."""
    path = ledger_path(home)
    if not path.is_file():
        return []
    entries: dict[str, Entry] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if record.get("event") == "lift":
            if record["id"] not in entries:
                raise ValueError(f"{path}: line {number}: lift of unknown rollback {record['id']}")
            entry = entries[record["id"]]
            entry.lifted_at, entry.lifted_by = record["at"], record["user"]
            entry.lift_reason = record.get("reason")
            continue
        target = Target(**record["target"])
        fields = {k: record[k] for k in ("id", "reason", "user", "created_at", "affected")}
        entries[record["id"]] = Entry(target=target, removed_ids=record["removed_ids"], **fields)
    return list(entries.values())


def active_entries(home: str | Path) -> list[Entry]:
    return [entry for entry in load_entries(home) if entry.active]


def record(home: str | Path, target: Target, reason: str, data_dir: str | Path) -> Entry:
    """Record a rollback of `target` with what it removes from the data as it is now."""
    if not reason.strip():
        raise ValueError("a rollback needs a reason")
    affected, removed = plan(target, data_dir)
    created = _now()
    entry = Entry(
        id="rb-" + sha256_hex(f"{target}|{created}|{reason}")[:10],
        target=target,
        reason=reason,
        user=_user(),
        created_at=created,
        affected=affected,
        removed_ids=sorted(removed),
    )
    _append(home, {"event": "rollback", **asdict(entry)})
    return entry


def lift(home: str | Path, rollback_id: str, reason: str) -> Entry:
    """Lift an active rollback: its rows may come back on the next materialization."""
    found = {entry.id: entry for entry in load_entries(home)}
    if rollback_id not in found:
        raise KeyError(f"no rollback {rollback_id} in {ledger_path(home)}")
    if not found[rollback_id].active:
        raise ValueError(f"rollback {rollback_id} was already lifted")
    _append(
        home, {"event": "lift", "id": rollback_id, "at": _now(), "user": _user(), "reason": reason}
    )
    return {entry.id: entry for entry in load_entries(home)}[rollback_id]


# ---- applying it ----------------------------------------------------------------------------


def removed_by(entries: Sequence[Entry], frames: Iterable[pl.DataFrame]) -> dict[str, str]:
    """id → the (oldest) active rollback that removes it, over `frames` and recorded ids."""
    return removed_by_rows(entries, _rows(frames)) if entries else {}


def removed_by_rows(entries: Sequence[Entry], rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """`removed_by` over provenance rows (dicts with id, parent_ids, root_seed_ids, generator)."""
    children = _children(rows)
    out: dict[str, str] = {}
    for entry in entries:
        hit = {row["id"] for row in rows if entry.target.matches(row)} | set(entry.removed_ids)
        for row_id in _closure(hit, children):
            out.setdefault(row_id, entry.id)
    return out


def drop_rolled_back(
    frame: pl.DataFrame, removals: Mapping[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows, removed rows with a `removed_by` column naming the rollback)."""
    if not removals or frame.is_empty():
        return frame, frame.head(0).with_columns(removed_by=pl.lit(None, pl.Utf8))
    lookup = pl.DataFrame(
        {"id": list(removals), "removed_by": list(removals.values())},
        schema={"id": pl.Utf8, "removed_by": pl.Utf8},
    )
    marked = frame.join(lookup, on="id", how="left", maintain_order="left")
    kept = marked.filter(pl.col("removed_by").is_null()).drop("removed_by")
    return kept, marked.filter(pl.col("removed_by").is_not_null())
