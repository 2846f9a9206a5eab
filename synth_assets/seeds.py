"""Seed assets: human-written text, code and math, cleaned, with source and licence per row."""

import os

import dagster as dg
import polars as pl
from pydantic import Field

from synth_assets.common import frame_output, row_context
from synth_lib.provenance.schema import Source, rows_to_frame
from synth_lib.reporting import counts_table
from synth_lib.seeds.cleaning import RawSeed, clean_seeds, reject_rows
from synth_lib.seeds.gsm8k import SeedFileMissing, gsm8k_seeds
from synth_lib.seeds.readers import read_records
from synth_lib.seeds.reference import reference_passages
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
    """Where seeds come from and how much of each to take."""

    gsm8k_path: str = Field(
        default_factory=lambda: os.environ.get("SYNTH_GSM8K_PATH", ""),
        description="GSM8K-format JSONL/Parquet (question, answer). Default: SYNTH_GSM8K_PATH. "
        "Empty or missing: math seeds are skipped with a warning.",
    )
    extra_text_paths: list[str] = Field(
        default=[],
        description="More human text seeds: JSONL/Parquet files with a `text` field "
        "(licence given by extra_text_license).",
    )
    extra_text_license: str = Field(default="unknown", description="Licence of extra_text_paths.")
    passage_min_chars: int = Field(default=300, description="Shortest reference passage kept.")
    passage_max_chars: int = Field(default=1200, description="Longest reference passage.")
    max_math_seeds: int = Field(default=0, description="Cap on math seeds (0: all).")


def _extra_text(config: SeedsConfig) -> tuple[list[RawSeed], list]:
    seeds, rejects = [], []
    for path in config.extra_text_paths:
        read = read_records(path, {"text": str})
        rejects += read.rejects
        seeds += [
            RawSeed(
                payload={"text": rec["text"], "title": str(rec.get("title") or "")},
                source=Source(os.path.basename(path), f"{path}:{line}", config.extra_text_license),
                text_fields=("text",),
            )
            for line, rec in read.records
        ]
    return seeds, rejects


@dg.multi_asset(
    group_name="seeds",
    outs={
        "text_seeds": dg.AssetOut(kinds={"polars"}, description="Language-reference passages."),
        "code_seeds": dg.AssetOut(
            kinds={"polars"}, description="Stdlib functions with docstrings."
        ),
        "math_seeds": dg.AssetOut(
            kinds={"polars"}, description="GSM8K problems with gold answers."
        ),
        "seed_quarantine": dg.AssetOut(
            kinds={"polars"}, description="Seed rows refused at load: file, line and reason."
        ),
    },
    code_version="seeds-1",
)
def seeds(context: dg.AssetExecutionContext, config: SeedsConfig):
    """Load, normalise, PII-scrub and exact-dedup every human seed source."""
    ctx = row_context(context)
    extra_seeds, extra_rejects = _extra_text(config)
    reference = list(reference_passages(config.passage_min_chars, config.passage_max_chars))
    text = clean_seeds(reference + extra_seeds, stage="text_seeds", ctx=ctx, rejects=extra_rejects)
    code = clean_seeds(stdlib_functions(), stage="code_seeds", ctx=ctx, normalizer=normalize_code)
    math_message = "loaded"
    try:
        raw_math, math_rejects = gsm8k_seeds(config.gsm8k_path) if config.gsm8k_path else ([], [])
        if not config.gsm8k_path:
            math_message = "skipped: no gsm8k_path configured (set SYNTH_GSM8K_PATH)"
    except SeedFileMissing as exc:
        raw_math, math_rejects, math_message = [], [], f"skipped: {exc}"
    if math_message != "loaded":
        context.log.warning(f"math seeds {math_message}")
    if config.max_math_seeds:
        raw_math = raw_math[: config.max_math_seeds]
    math = clean_seeds(raw_math, stage="math_seeds", ctx=ctx, rejects=math_rejects)

    quarantine = pl.DataFrame(
        reject_rows(text.rejects, "text_seeds") + reject_rows(math.rejects, "math_seeds"),
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
