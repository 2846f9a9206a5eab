"""Seed assets: human-written text, code and math, cleaned, with source and licence per row."""

import os

import dagster as dg
import polars as pl
from pydantic import Field

from synth_assets.common import frame_output, row_context
from synth_assets.partitions import SHARDED, shard_of
from synth_lib.provenance.schema import rows_to_frame
from synth_lib.reporting import counts_table
from synth_lib.seeds import sharding
from synth_lib.seeds.cleaning import RawSeed, clean_seeds, reject_rows
from synth_lib.seeds.gsm8k import SeedFileMissing, gsm8k_seeds
from synth_lib.seeds.reference import reference_passages
from synth_lib.seeds.seed_dir import list_seed_files, local_copy
from synth_lib.seeds.seed_files import FileShard, read_file_shard
from synth_lib.seeds.sharding import ShardKey, ShardKeyError, file_origin
from synth_lib.seeds.stdlib_code import stdlib_functions
from synth_lib.seeds.textclean import normalize_code

TEXT_SCHEMA = {"text": pl.Utf8, "title": pl.Utf8}
CODE_SCHEMA = {"text": pl.Utf8, "name": pl.Utf8, "module": pl.Utf8}
MATH_SCHEMA = {"question": pl.Utf8, "answer": pl.Utf8, "gold": pl.Utf8}
REJECT_SCHEMA = {
    "stage": pl.Utf8,
    "file": pl.Utf8,
    "line": pl.Int64,
    "reason": pl.Utf8,
    "raw": pl.Utf8,
}


class SeedsConfig(dg.Config):
    """Where seeds come from; which rows of them a shard holds is in its key."""

    gsm8k_path: str = Field(
        default_factory=lambda: os.environ.get("SYNTH_GSM8K_PATH", ""),
        description="GSM8K-format JSONL/Parquet (question, answer) cut into `gsm8k-*` shards. "
        "Default: SYNTH_GSM8K_PATH. Empty or missing: math shards are empty, with a warning.",
    )
    seed_dir: str = Field(
        default_factory=lambda: os.environ.get("SYNTH_SEED_DIR", ""),
        description="Folder or s3:// prefix whose files become `file_*` shards "
        "(default: SYNTH_SEED_DIR).",
    )
    passage_min_chars: int = Field(default=300, description="Shortest reference passage kept.")
    passage_max_chars: int = Field(default=1200, description="Longest reference passage.")


_REJECT_STAGE = {sharding.GSM8K: "math_seeds", sharding.REFERENCE: "text_seeds"}


def _math_shard(path: str, key: ShardKey) -> tuple[list[RawSeed], list, str]:
    """This shard's GSM8K lines: (seeds, rejects, status message)."""
    if not path:
        return [], [], "skipped: no gsm8k_path configured (set SYNTH_GSM8K_PATH)"
    try:
        raw, rejects = gsm8k_seeds(path)
    except SeedFileMissing as exc:
        return [], [], f"skipped: {exc}"
    lines = key.lines
    seeds = [s for s in raw if int(s.source.location.rsplit(":", 1)[1]) in lines]
    return seeds, [r for r in rejects if r.line in lines], "loaded"


def _shard_sources(config: SeedsConfig, key: ShardKey) -> tuple[FileShard, str]:
    """The raw seeds of one shard by kind, and the math status message."""
    shard, status = FileShard(), "no math rows in this shard"
    if key.origin == sharding.REFERENCE:
        passages = reference_passages(config.passage_min_chars, config.passage_max_chars)
        shard.text = key.take(list(passages))
    elif key.origin == sharding.STDLIB:
        shard.code = key.take(list(stdlib_functions()))
    elif key.origin == sharding.GSM8K:
        shard.math, shard.rejects, status = _math_shard(config.gsm8k_path, key)
    elif key.is_file:
        shard = _file_shard(config.seed_dir, key)
    elif key.origin != sharding.REASONING_GYM:
        raise ShardKeyError(f"{key}: unknown shard origin {key.origin!r}")
    return shard, status


def _file_shard(seed_dir: str, key: ShardKey) -> FileShard:
    """The seed file behind a `file_*` key, found by listing the seed folder."""
    names = [f.name for f in list_seed_files(seed_dir)] if seed_dir else []
    for name in names:
        if file_origin(name) == key.origin:
            return read_file_shard(local_copy(seed_dir, name), name, key.lines)
    raise FileNotFoundError(
        f"shard {key}: no file in the seed folder {seed_dir or '(SYNTH_SEED_DIR unset)'} "
        "has this origin; was it renamed or removed?"
    )


@dg.multi_asset(
    group_name="seeds",
    outs={
        "text_seeds": dg.AssetOut(kinds={"polars"}, description="Prose seeds of the shard."),
        "code_seeds": dg.AssetOut(kinds={"polars"}, description="Code seeds of the shard."),
        "math_seeds": dg.AssetOut(
            kinds={"polars"}, description="Math problems with gold answers of the shard."
        ),
        "seed_quarantine": dg.AssetOut(
            kinds={"polars"}, description="Seed rows refused at load: file, line and reason."
        ),
    },
    code_version="seeds-2",
    **SHARDED,
)
def seeds(context: dg.AssetExecutionContext, config: SeedsConfig):
    """Load one shard's seeds, then normalise, PII-scrub and exact-dedup them."""
    ctx = row_context(context)
    key = shard_of(context)
    raw, math_message = _shard_sources(config, key)
    text = clean_seeds(raw.text, stage="text_seeds", ctx=ctx)
    code = clean_seeds(raw.code, stage="code_seeds", ctx=ctx, normalizer=normalize_code)
    if math_message.startswith("skipped"):
        context.log.warning(f"math seeds {math_message}")
    math = clean_seeds(raw.math, stage="math_seeds", ctx=ctx)
    quarantine = pl.DataFrame(
        reject_rows(raw.rejects, _REJECT_STAGE.get(key.origin, "seed_file")),
        schema=REJECT_SCHEMA,
    )
    for batch, name, schema, preview in (
        (text, "text_seeds", TEXT_SCHEMA, ["id", "title", "text"]),
        (code, "code_seeds", CODE_SCHEMA, ["id", "name", "text"]),
        (math, "math_seeds", MATH_SCHEMA, ["id", "question", "gold"]),
    ):
        frame = rows_to_frame(batch.rows, schema)
        extra = {
            **batch.metadata(),
            "pii_replacements": dg.MetadataValue.json(dict(batch.pii_counts)),
            "licenses": dg.MetadataValue.json(
                frame.group_by(pl.col("source").struct.field("license")).len().to_dicts()
                if frame.height
                else []
            ),
        }
        if name == "math_seeds":
            extra["status"] = math_message
        yield frame_output(frame, preview, extra, output_name=name)
    reasons = quarantine.group_by("reason").len().to_dicts() if quarantine.height else []
    yield frame_output(
        quarantine,
        ["file", "line", "reason", "raw"],
        {"reasons": dg.MetadataValue.md(counts_table({r["reason"]: r["len"] for r in reasons}))},
        output_name="seed_quarantine",
    )
