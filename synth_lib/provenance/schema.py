"""The provenance record every row of every stage carries, and its content-addressed id.

One module owns the schema so that every stage writes the same columns and any two
stages' rows can be concatenated, filtered by seed or by model, and traced back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from synth_lib.provenance.hashing import canonical_json, sha256_hex

ID_HEX_CHARS = 32

SOURCE_DTYPE = pl.Struct({"dataset": pl.Utf8, "location": pl.Utf8, "license": pl.Utf8})
GENERATOR_DTYPE = pl.Struct(
    {
        "backend": pl.Utf8,
        "model": pl.Utf8,
        "revision": pl.Utf8,
        "template": pl.Utf8,
        "template_hash": pl.Utf8,
        "sampling": pl.Utf8,
        "seed": pl.Int64,
        "is_smoke_model": pl.Boolean,
        "license": pl.Utf8,
    }
)
VERDICT_DTYPE = pl.Struct(
    {"name": pl.Utf8, "passed": pl.Boolean, "score": pl.Float64, "reason": pl.Utf8}
)
PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8(),
    "parent_ids": pl.List(pl.Utf8),
    "root_seed_ids": pl.List(pl.Utf8),
    "stage": pl.Utf8(),
    "is_synthetic": pl.Boolean(),
    "source": SOURCE_DTYPE,
    "generator": GENERATOR_DTYPE,
    "verdicts": pl.List(VERDICT_DTYPE),
    "run_id": pl.Utf8(),
    "created_at": pl.Datetime("us", "UTC"),
}
PROVENANCE_COLUMNS = tuple(PROVENANCE_SCHEMA)


@dataclass(frozen=True)
class Source:
    """Where a human seed came from."""

    dataset: str
    location: str
    license: str


@dataclass(frozen=True)
class Generator:
    """What produced a synthetic row: enough to reproduce the request exactly."""

    backend: str
    model: str
    revision: str
    template: str
    template_hash: str
    sampling: str
    seed: int
    is_smoke_model: bool = False
    license: str = ""  # the model weights' licence, where known (e.g. Apache-2.0)


@dataclass(frozen=True)
class Verdict:
    """One check a row went through."""

    name: str
    passed: bool
    score: float | None = None
    reason: str | None = None


@dataclass
class RowContext:
    """Per-run values stamped on every row a stage writes."""

    run_id: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def row_id(stage: str, parent_ids: Sequence[str], payload: Mapping[str, Any]) -> str:
    """Content-addressed id: same stage, parents and payload give the same id on every run."""
    material = canonical_json({"stage": stage, "parents": sorted(parent_ids), "payload": payload})
    return sha256_hex(material)[:ID_HEX_CHARS]


def provenance(
    *,
    stage: str,
    payload: Mapping[str, Any],
    ctx: RowContext,
    parents: Sequence[Mapping[str, Any]] = (),
    source: Source | None = None,
    generator: Generator | None = None,
    verdicts: Iterable[Verdict] = (),
) -> dict[str, Any]:
    """Build the provenance columns for one row; `parents` are parent rows (dicts with ids).

    Seeds have a `source` and are their own root; every other row inherits the union of
    its parents' root seeds, so ancestry to the human seeds is a column lookup.
    """
    parent_ids = [p["id"] for p in parents]
    rid = row_id(stage, parent_ids, payload)
    if parents:
        roots = sorted({r for p in parents for r in p["root_seed_ids"]})
    else:
        roots = [rid]
    return {
        "id": rid,
        "parent_ids": parent_ids,
        "root_seed_ids": roots,
        "stage": stage,
        "is_synthetic": generator is not None or any(bool(p.get("is_synthetic")) for p in parents),
        "source": asdict(source) if source else None,
        "generator": asdict(generator) if generator else None,
        "verdicts": [asdict(v) for v in verdicts],
        "run_id": ctx.run_id,
        "created_at": ctx.created_at,
    }


def make_row(
    *, stage: str, payload: Mapping[str, Any], ctx: RowContext, **kwargs: Any
) -> dict[str, Any]:
    """A full row: payload columns followed by provenance columns."""
    return {**payload, **provenance(stage=stage, payload=payload, ctx=ctx, **kwargs)}


def rows_to_frame(
    rows: Sequence[Mapping[str, Any]], payload_schema: Mapping[str, Any]
) -> pl.DataFrame:
    """A DataFrame with the payload columns first and the provenance schema enforced."""
    schema = {**payload_schema, **PROVENANCE_SCHEMA}
    return pl.DataFrame(list(rows), schema=schema)


def add_verdicts(row: Mapping[str, Any], verdicts: Iterable[Verdict]) -> dict[str, Any]:
    """A copy of `row` with more verdicts appended (the id does not change: payload is the same)."""
    out = dict(row)
    out["verdicts"] = list(row.get("verdicts") or []) + [asdict(v) for v in verdicts]
    return out


def content_hash(frame: pl.DataFrame) -> str:
    """Data version of a frame: ids (which hash the payload), so run ids and timestamps don't
    count. Frames without ids (quarantine, failure logs) are hashed row by row instead."""
    if "id" in frame.columns:
        parts = frame.get_column("id").sort().to_list()
    else:
        parts = sorted(canonical_json(row) for row in frame.to_dicts())
    return sha256_hex("\n".join(parts))[:16]


def generator_for(identity: Any, template: Any, sampling: Any, seed: int) -> Generator:
    """The `generator` record for a row made by `identity` (a ModelIdentity) from `template`."""
    return Generator(
        backend=identity.backend,
        model=identity.model,
        revision=identity.revision,
        template=template.name,
        template_hash=template.hash,
        sampling=sampling.to_json(),
        seed=seed,
        is_smoke_model=identity.is_smoke_model,
        license=getattr(identity, "license", ""),
    )
