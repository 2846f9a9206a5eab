"""`generation_failures`: every request that produced no usable response, per stage.

Engine errors after retries, truncations, content-filter stops and answers that failed
validation are recorded by the engine wrapper as they happen. Transient errors are never
cached, so re-materializing a stage re-sends exactly its retryable failures; permanent ones
(`retryable` false: a 4xx refusal, a truncation) are not re-sent unless the request changes.
"""

import dagster as dg
import polars as pl

from resources.engine import GenerationEngine
from synth_assets.common import frame_output
from synth_lib.engines.failures import FAILURE_COLUMNS, failure_metadata
from synth_lib.reporting import counts_table

GENERATING_ASSETS = [
    "rephrasings",
    "code_problems",
    "verified_code",
    "cot_traces",
    "preference_pairs",
    "debate_verdicts",
]
_POLARS = {str: pl.Utf8, int: pl.Int64, bool: pl.Boolean}


@dg.asset(
    group_name="synthetic",
    kinds={"polars"},
    code_version="failures-1",
    deps=GENERATING_ASSETS,
)
def generation_failures(engine: GenerationEngine) -> dg.MaterializeResult:
    """Outstanding failed requests of each generating stage's latest run on each shard."""
    schema = {name: _POLARS[kind] for name, kind in FAILURE_COLUMNS.items()}
    rows = engine.cache.failures()
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    summary = failure_metadata(rows, len(rows))
    by_stage = frame.group_by("stage").len().rows() if frame.height else []
    extra = {
        "failures": frame.height,
        "retryable": summary["generation_failures_retryable"],
        "permanent": summary["generation_failures_permanent"],
        "by_stage": dg.MetadataValue.md(counts_table(dict(by_stage), "stage")),
        "by_error_class": dg.MetadataValue.md(
            counts_table(summary["generation_failures_by_class"], "error class")
        ),
    }
    return frame_output(frame, ["stage", "error_class", "attempts", "prompt_hash"], extra)
