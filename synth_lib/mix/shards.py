"""The training mix: real and synthetic rows at a set ratio, shuffled, written as shards + manifest.

Every stage's rows are projected onto one schema (`text`, `prompt`, `response`, `kind`,
`weight` + provenance). Members keep their own ids, so a mix row's lineage is the row
that was mixed in. The manifest lists each shard's sha256 and row count so a consumer
can prove the shards it trains on are the ones that were written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import PROVENANCE_COLUMNS

# TRL's conversational format: a list of {role, content} (multi-turn dialogues carry one).
MESSAGES_DTYPE = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
MIX_PAYLOAD_SCHEMA: dict[str, pl.DataType] = {
    "text": pl.Utf8(),
    "prompt": pl.Utf8(),
    "response": pl.Utf8(),
    "chosen": pl.Utf8(),
    "rejected": pl.Utf8(),
    "messages": MESSAGES_DTYPE,
    "kind": pl.Utf8(),
    "weight": pl.Float64(),
}
MANIFEST_NAME = "manifest.json"


def to_mix_schema(frame: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Project a stage's rows onto the mix schema.

    Prompt/response rows, question/answer seeds and DPO pairs (prompt/chosen/rejected)
    get a `text` view too (prompt + response, or prompt + chosen; a dialogue's
    `messages` as "role: content" lines), so text-level curation sees every row.
    """
    if "question" in frame.columns and "prompt" not in frame.columns:
        frame = frame.rename({"question": "prompt", "answer": "response"})
    cols = frame.columns

    def col(name: str) -> pl.Expr:
        return pl.col(name) if name in cols else pl.lit(None, pl.Utf8)

    answer = col("response") if "response" in cols else col("chosen")
    messages = pl.col("messages") if "messages" in cols else pl.lit(None, MESSAGES_DTYPE)
    if "text" in cols:
        text = pl.col("text")
    elif "messages" in cols:
        text = messages.list.eval(
            pl.concat_str(
                [pl.element().struct.field("role"), pl.element().struct.field("content")],
                separator=": ",
            )
        ).list.join("\n")
    else:
        text = pl.concat_str([col("prompt"), answer], separator="\n\n")
    weight = pl.col("weight").cast(pl.Float64).fill_null(1.0) if "weight" in cols else pl.lit(1.0)
    return frame.select(
        text.cast(pl.Utf8).alias("text"),
        *(
            col(name).cast(pl.Utf8).alias(name)
            for name in ("prompt", "response", "chosen", "rejected")
        ),
        messages.cast(MESSAGES_DTYPE).alias("messages"),
        pl.lit(kind).alias("kind"),
        weight.alias("weight"),
        *PROVENANCE_COLUMNS,
    ).cast(MIX_PAYLOAD_SCHEMA)


def accepted_only(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose every verdict passed (the `accepted` column where a stage provides one)."""
    if "accepted" in frame.columns:
        return frame.filter(pl.col("accepted"))
    return frame


@dataclass(frozen=True)
class MixPlan:
    """How many rows of each side went in, and why."""

    real_available: int
    synthetic_available: int
    real_taken: int
    synthetic_taken: int


def _sample_real(real: pl.DataFrame, synthetic: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """`n` real rows: first the seeds the chosen synthetic rows descend from, then a seeded
    sample of the rest. A rewrite's own passage is then in the mix beside it, so curation
    anchors it to its source rather than to whichever passages the sample happened to hold."""
    if not n:
        return real.head(0)
    if "root_seed_ids" not in synthetic.columns or "id" not in real.columns:
        return real.sample(n=n, seed=seed, shuffle=True)
    roots = synthetic.get_column("root_seed_ids").explode().drop_nulls().unique()
    parents = real.filter(pl.col("id").is_in(roots.implode())).sort("id").head(n)
    rest = real.filter(~pl.col("id").is_in(parents.get_column("id").implode()))
    fill = n - parents.height
    filler = rest.sample(n=fill, seed=seed, shuffle=True) if fill else rest.head(0)
    return pl.concat([parents, filler], how="vertical")


def build_mix(
    real: pl.DataFrame, synthetic: pl.DataFrame, real_per_synthetic: float, seed: int
) -> tuple[pl.DataFrame, MixPlan]:
    """All accepted synthetic rows plus `real_per_synthetic` real rows each, shuffled with `seed`.

    If there are too few real rows, synthetic rows are subsampled instead so the ratio holds.
    """
    if real_per_synthetic <= 0:
        raise ValueError("real_per_synthetic must be > 0")
    n_syn = synthetic.height
    n_real = min(real.height, round(n_syn * real_per_synthetic))
    if n_real < round(n_syn * real_per_synthetic):
        n_syn = min(n_syn, round(n_real / real_per_synthetic))
    syn_part = synthetic.sample(n=n_syn, seed=seed, shuffle=True) if n_syn else synthetic.head(0)
    real_part = _sample_real(real, syn_part, n_real, seed)
    mixed = pl.concat([real_part, syn_part], how="vertical")
    mixed = mixed.sample(fraction=1.0, seed=seed, shuffle=True) if mixed.height else mixed
    plan = MixPlan(real.height, synthetic.height, n_real, n_syn)
    return mixed, plan


def write_shards(
    frame: pl.DataFrame, target: str | Path, rows_per_shard: int, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """Write `frame` as Parquet shards + manifest into `target`, replacing it atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shards = []
    starts = range(0, max(frame.height, 1), rows_per_shard)
    for index, start in enumerate(starts):
        part = frame.slice(start, rows_per_shard)
        name = f"part-{index:05d}.parquet"
        part.write_parquet(staging / name, statistics=True)
        digest = sha256_hex((staging / name).read_bytes())
        shards.append({"path": name, "sha256": digest, "rows": part.height})
    manifest = {"total_rows": frame.height, "shards": shards, **extra}
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


class ManifestError(ValueError):
    """A shard is missing or does not match the sha256/row count in its manifest."""


def verify_shards(target: str | Path) -> dict[str, Any]:
    """Check every shard against the manifest; raise `ManifestError` naming the bad shard.

    The sha256 proves the bytes; the row counts (per shard, read from the Parquet footer,
    and their sum against `total_rows`) catch a manifest edited or written for other data.
    """
    target = Path(target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    for shard in manifest["shards"]:
        path = target / shard["path"]
        if not path.is_file():
            raise ManifestError(f"{path}: shard listed in the manifest is missing")
        digest = sha256_hex(path.read_bytes())
        if digest != shard["sha256"]:
            raise ManifestError(
                f"{path}: sha256 {digest[:12]}… does not match manifest {shard['sha256'][:12]}…"
            )
        rows = pq.read_metadata(path).num_rows
        if rows != shard["rows"]:
            raise ManifestError(f"{path}: {rows} rows, manifest says {shard['rows']}")
    listed = sum(shard["rows"] for shard in manifest["shards"])
    if listed != manifest["total_rows"]:
        raise ManifestError(
            f"{target / MANIFEST_NAME}: shards hold {listed} rows, "
            f"total_rows says {manifest['total_rows']}"
        )
    return manifest


def read_shards(target: str | Path) -> pl.DataFrame:
    """Read the mix back after verifying it against its manifest."""
    manifest = verify_shards(target)
    return pl.concat([pl.read_parquet(Path(target) / s["path"]) for s in manifest["shards"]])
