"""The mix as trainers read it: one config (folder) per kind, in TRL's column names.

TRL recognises fixed column sets; a table that mixes kinds confuses it. So each row goes
to exactly one config, with its provenance columns beside the trainer's:

| config | columns | kinds |
|---|---|---|
| `text` | `text` | human prose seeds, rephrasings |
| `messages` | `messages` (user, assistant, ...) | reasoning, code, instructions, dialogues |
| `prompt_completion` | `prompt`, `completion` | code and math seeds, execution traces |
| `preference` | `prompt`, `chosen`, `rejected` | DPO pairs |

The folder holds `<config>/train-*.parquet`, a `manifest.json` with every file's sha256
and row count, the dataset card (`README.md`) and `croissant.json`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from synth_lib.provenance.hashing import sha256_hex

CONFIGS = ("text", "messages", "prompt_completion", "preference")
KIND_CONFIG = {
    "text": "text",
    "rephrasing": "text",
    "reasoning": "messages",
    "code_solution": "messages",
    "code": "prompt_completion",
    "math": "prompt_completion",
    "reasoning_task": "prompt_completion",
    "execution_trace": "prompt_completion",
    "preference": "preference",
    "instruction": "messages",
    "dialogue": "messages",
    "code_explanation": "messages",
}
PROVENANCE_EXPORT = (
    "id",
    "kind",
    "stage",
    "license",
    "is_synthetic",
    "root_seed_ids",
    "parent_ids",
    "source",
    "generator",
    "verdicts",
    "run_id",
    "created_at",
)
MANIFEST_NAME = "manifest.json"


def config_of(kind: pl.Expr, chosen: pl.Expr, response: pl.Expr) -> pl.Expr:
    """A row's config: by its kind, or by its columns for a kind this module does not know."""
    known = kind.replace_strict(KIND_CONFIG, default=None, return_dtype=pl.Utf8)
    fallback = (
        pl.when(chosen.is_not_null())
        .then(pl.lit("preference"))
        .when(response.is_not_null())
        .then(pl.lit("prompt_completion"))
        .otherwise(pl.lit("text"))
    )
    return pl.coalesce(known, fallback)


def split_by_config(mix: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The mix (with a `license` column) as one frame per non-empty config."""
    labelled = mix.with_columns(
        _config=config_of(pl.col("kind"), pl.col("chosen"), pl.col("response"))
    )
    payload = {
        "text": [pl.col("text")],
        "messages": [
            pl.coalesce(
                # a multi-turn dialogue carries its own messages; others are one exchange
                *([pl.col("messages")] if "messages" in mix.columns else []),
                pl.concat_list(
                    pl.struct(role=pl.lit("user"), content=pl.col("prompt")),
                    pl.struct(role=pl.lit("assistant"), content=pl.col("response")),
                ),
            ).alias("messages")
        ],
        "prompt_completion": [pl.col("prompt"), pl.col("response").alias("completion")],
        "preference": [pl.col("prompt"), pl.col("chosen"), pl.col("rejected")],
    }
    out = {}
    for config in CONFIGS:
        part = labelled.filter(pl.col("_config") == config)
        if part.height:
            out[config] = part.select(*payload[config], *PROVENANCE_EXPORT)
    return out


def write_export(
    configs: Mapping[str, pl.DataFrame],
    target: str | Path,
    card: str,
    croissant: Mapping[str, Any],
    rows_per_file: int = 50_000,
) -> dict[str, Any]:
    """Write the export folder, replacing `target` atomically; returns the manifest."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    files = []
    for config, frame in configs.items():
        (staging / config).mkdir(parents=True)
        starts = list(range(0, frame.height, rows_per_file))
        for index, start in enumerate(starts):
            name = f"{config}/train-{index:05d}-of-{len(starts):05d}.parquet"
            part = frame.slice(start, rows_per_file)
            part.write_parquet(staging / name)
            digest = sha256_hex((staging / name).read_bytes())
            files.append({"path": name, "config": config, "rows": part.height, "sha256": digest})
    manifest = {"total_rows": sum(f["rows"] for f in files), "files": files}
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    (staging / "README.md").write_text(card, encoding="utf-8")
    (staging / "croissant.json").write_text(json.dumps(croissant, indent=2), encoding="utf-8")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return manifest
