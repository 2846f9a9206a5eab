"""Row licences: the most restrictive of a row's root seeds and of its generating model.

Ranked by what a user of the data inherits, least first: no conditions; keep a notice;
keep a notice + state changes / patent terms; attribution licences for content;
share-alike; copyleft; custom model licences with use restrictions; non-commercial.
A name not in the ranking is treated as `unknown`, the most restrictive: a licence
nobody has reviewed must not pass an allow-list by accident.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl

RANKING = (
    "cc0-1.0",
    "unlicense",
    "mit",
    "bsd-2-clause",
    "bsd-3-clause",
    "isc",
    "psf-2.0",
    "apache-2.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "lgpl-3.0",
    "gpl-3.0",
    "llama3",
    "llama3.1",
    "gemma",
    "cc-by-nc-4.0",
    "unknown",
)
_RANK = {name: i for i, name in enumerate(RANKING)}
# Licences of the models we know, by model-name glob (the rows' generator.model).
MODEL_LICENCES: dict[str, str] = {
    "smoke-random-*": "apache-2.0",  # built here from random weights: this project's licence
    "cpython-*": "psf-2.0",  # execution traces: the interpreter ran a stdlib function
    "SmolLM2-*": "apache-2.0",
    "Qwen2.5-*": "apache-2.0",
    "Qwen3-*": "apache-2.0",
    "*Llama-3.1*": "llama3.1",
    "*Llama-3*": "llama3",
    "gemma-*": "gemma",
    "gpt-*": "unknown",  # hosted APIs: terms of service, not a licence
}


def normalise(name: str | None) -> str:
    key = (name or "unknown").strip().lower()
    return key if key in _RANK else "unknown"


def most_restrictive(names: Iterable[str | None]) -> str:
    """The highest-ranked licence among `names` (`unknown` if there are none)."""
    ranked = [normalise(n) for n in names]
    return max(ranked, key=_RANK.__getitem__) if ranked else "unknown"


def model_licence(model: str | None, table: Mapping[str, str] = MODEL_LICENCES) -> str | None:
    """The licence of a generating model, `unknown` when no glob matches; None: no model."""
    if not model:
        return None
    for pattern, licence in table.items():
        if fnmatch.fnmatchcase(model, pattern):
            return licence
    return "unknown"


def row_licence(
    root_seed_ids: Iterable[str], model: str | None, seed_licences: Mapping[str, str]
) -> str:
    """Most restrictive of the root seeds' licences and the row's model's licence."""
    names: list[str | None] = [seed_licences.get(root, "unknown") for root in root_seed_ids]
    licence = model_licence(model)
    if licence is not None:
        names.append(licence)
    return most_restrictive(names)


def seed_licences(paths: Iterable[str | Path]) -> dict[str, str]:
    """Seed id → licence, from every materialized file whose rows carry a `source`."""
    out: dict[str, str] = {}
    for path in paths:
        if not {"id", "source", "parent_ids"} <= set(pl.read_parquet_schema(path)):
            continue
        seeds = pl.read_parquet(path, columns=["id", "source", "parent_ids"]).filter(
            pl.col("source").is_not_null() & (pl.col("parent_ids").list.len() == 0)
        )
        licences = seeds.select("id", pl.col("source").struct.field("license"))
        out.update(dict(licences.iter_rows()))
    return out
