"""`rephrasings`: WRAP-style rewrites of text seeds, every response kept with its verdicts."""

import time

import dagster as dg
import polars as pl
from pydantic import Field

from resources.engine import GenerationEngine
from synth_assets.common import GPU_STEP, frame_output, generation_metadata, row_context
from synth_assets.partitions import SHARDED
from synth_lib.engines.base import SamplingParams
from synth_lib.prompts import load_template, templates_hash
from synth_lib.provenance.schema import rows_to_frame
from synth_lib.reporting import counts_table, histogram_png_markdown
from synth_lib.text.content_gate import ContentThresholds
from synth_lib.text.rephrase import STAGE, STYLE_TEMPLATES, rephrase

PAYLOAD_SCHEMA = {
    "text": pl.Utf8,
    "style": pl.Utf8,
    "accepted": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}


class RephraseConfig(dg.Config):
    """Which seeds to rephrase, in which styles, and how to sample."""

    max_seeds: int = Field(default=8, description="Text seeds to rephrase per shard (0: all).")
    max_passage_chars: int = Field(
        default=700,
        description="Rephrase only passages up to this long (0: any): a 135M model rambles "
        "past its budget on long ones.",
    )
    styles: list[str] = Field(
        default=list(STYLE_TEMPLATES), description=f"Subset of {list(STYLE_TEMPLATES)}."
    )
    temperature: float = Field(default=0.7, description="Sampling temperature.")
    top_p: float = Field(default=0.95, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=200, description="Completion budget; hitting it = truncated.")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")
    max_copy_jaccard: float = Field(
        default=0.7, description="Word 3-gram Jaccard with the seed above which a row is a copy."
    )
    min_content_support: float = Field(
        default=0.3,
        description="Content gate: least share of the rewrite's key terms found in its passage.",
    )
    min_content_coverage: float = Field(
        default=0.15,
        description="Content gate: least share of the passage's key terms the rewrite carries.",
    )


@dg.asset(
    group_name="synthetic",
    kinds={"polars"},
    code_version=f"rephrase-1-{templates_hash(*STYLE_TEMPLATES.values())}",
    **SHARDED,
    **GPU_STEP,
)
def rephrasings(
    context: dg.AssetExecutionContext,
    config: RephraseConfig,
    engine: GenerationEngine,
    text_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Rewrite seed passages in four styles; rejected outputs stay as rows with their reason."""
    seeds = text_seeds.sort("id")
    if config.max_passage_chars:
        seeds = seeds.filter(pl.col("text").str.len_chars() <= config.max_passage_chars)
    if config.max_seeds:
        seeds = seeds.head(config.max_seeds)
    cached = engine.engine_for(STAGE)
    began = time.perf_counter()
    outcome = rephrase(
        seeds.to_dicts(),
        cached,
        row_context(context),
        styles=config.styles,
        sampling=SamplingParams(config.temperature, config.top_p, config.max_tokens),
        seed=config.seed,
        max_copy_jaccard=config.max_copy_jaccard,
        content=ContentThresholds(config.min_content_support, config.min_content_coverage),
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(outcome.rows, PAYLOAD_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    lengths = frame.filter(pl.col("accepted")).get_column("text").str.len_chars().to_list()
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "rows_by_style": dg.MetadataValue.json(dict(outcome.requested_by_style)),
        "accepted_by_style": dg.MetadataValue.json(dict(outcome.accepted_by_style)),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "template_hashes": dg.MetadataValue.json(
            {name: load_template(name).hash for name in STYLE_TEMPLATES.values()}
        ),
        "accepted_length_histogram": dg.MetadataValue.md(
            histogram_png_markdown(lengths, "accepted rephrasing length", "characters")
        ),
    }
    return frame_output(frame, ["style", "accepted", "text", "id"], extra)
