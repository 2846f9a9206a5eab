"""Great Expectations 1.x gates over a dataset frame: schema, provenance, ids, ranges, labels.

One ephemeral GX context, one pandas batch and one suite per call (building contexts is
the slow part of GX), validated in a single pass. Only the columns the suite looks at
are converted to pandas. The result is (success, summary) so a Dagster asset check can
pass it straight into its metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

PROVENANCE_REQUIRED = ("id", "stage", "run_id", "created_at", "root_seed_ids")
# The stages this code location writes; a new stage must be added here (or passed in).
DEFAULT_STAGES = (
    "text_seeds",
    "code_seeds",
    "math_seeds",
    "rephrasings",
    "reasoning_tasks",
    "cot_traces",
    "preference_pairs",
    "debate_verdicts",
    "code_problems",
    "verified_code",
    "execution_traces",
    "instructions",
    "dialogues",
    "code_explanations",
    "search_traces",
    "stratified_instructions",
)


def _suite(
    columns: Sequence[str],
    stages: Iterable[str] | None,
    positive: Sequence[str],
    non_null: Sequence[str],
) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="synth_quality_gates")
    suite.add_expectation(
        gxe.ExpectTableColumnsToMatchSet(column_set=list(columns), exact_match=False)
    )
    for column in non_null:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column="id"))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(column="is_synthetic", value_set=[True, False])
    )
    if stages is not None:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(column="stage", value_set=list(stages))
        )
    for column in positive:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
        )
    if "root_seed_ids" in non_null:  # lists arrive as their lengths: every row has a root
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column="root_seed_ids", min_value=1)
        )
    return suite


def _error(info: dict[str, Any] | None) -> str | None:
    """GX nests exception info per metric when a metric could not be computed."""
    if not info:
        return None
    if "exception_message" in info:
        return info["exception_message"]
    messages = {v.get("exception_message") for v in info.values() if isinstance(v, dict)}
    return "; ".join(sorted(m for m in messages if m)) or None


def _describe(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"batch_id", "value_set"}}
    stats = result.result or {}
    detail = {
        "expectation": config.type,
        **kwargs,
        "success": bool(result.success),
        "unexpected_count": stats.get("unexpected_count"),
        "unexpected_sample": [str(v) for v in (stats.get("partial_unexpected_list") or [])[:5]],
    }
    if "details" in stats:
        detail["details"] = stats["details"]
    if not result.success:
        detail["error"] = _error(result.exception_info)
    return detail


def run_gates(
    frame: pl.DataFrame,
    *,
    required_columns: Sequence[str] = ("text", *PROVENANCE_REQUIRED, "is_synthetic"),
    allowed_stages: Iterable[str] | None = DEFAULT_STAGES,
    positive_columns: Sequence[str] = ("weight",),
) -> tuple[bool, dict[str, Any]]:
    """Validate `frame`; a required column that is missing fails the schema expectation.

    `allowed_stages=None` skips the label check; `positive_columns` that are absent are
    skipped (the range check applies only where the column exists, e.g. `weight`).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    present = [c for c in required_columns if c in frame.columns]
    non_null = [c for c in PROVENANCE_REQUIRED if c in frame.columns]
    positive = [c for c in positive_columns if c in frame.columns]
    labels = ["id", "is_synthetic", "stage"]
    needed = sorted({*present, *non_null, *positive, *(c for c in labels if c in frame.columns)})
    table = frame.select(needed).with_columns(
        pl.col(c).list.len().alias(c) for c in needed if isinstance(frame.schema[c], pl.List)
    )
    pdf = table.to_pandas()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("synth")
    batch = (
        source.add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": pdf})
    )
    suite = _suite(required_columns, allowed_stages, positive, non_null)
    result = batch.validate(suite)
    details = [_describe(r) for r in result.results]
    summary = {
        "success": bool(result.success),
        "rows": frame.height,
        "evaluated": len(details),
        "failed": [d for d in details if not d["success"]],
        "results": details,
    }
    return bool(result.success), summary
