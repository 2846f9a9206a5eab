"""What every asset attaches: row count, column schema, content-hash data version, preview."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from synth_lib.engines.cache import CachedEngine
from synth_lib.engines.economics import PriceTable, economics_metadata
from synth_lib.engines.factory import k8s_gpu_op_tags
from synth_lib.engines.failures import failure_metadata
from synth_lib.provenance.schema import RowContext, content_hash
from synth_lib.reporting import markdown_preview

GENERATION_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# The Celery queue GPU steps go to (`dagster-celery worker start -q gpu` on GPU boxes); every
# other step goes to the executor's default queue, served by CPU workers.
GPU_QUEUE = "gpu"
CELERY_QUEUE_TAG = "dagster-celery/queue"
# What every asset that calls the engine declares: one GPU slot, here, on Kubernetes and on
# the Celery fleet.
GPU_STEP = {
    "pool": "gpu",
    "op_tags": {**k8s_gpu_op_tags(1), CELERY_QUEUE_TAG: GPU_QUEUE},
    "retry_policy": GENERATION_RETRY,
}

_DAGSTER_TYPES = {pl.Utf8: "string", pl.Boolean: "bool", pl.Int64: "int", pl.Float64: "float"}


def row_context(context: dg.AssetExecutionContext) -> RowContext:
    return RowContext(run_id=context.run.run_id)


def column_schema(frame: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, _DAGSTER_TYPES.get(dtype.base_type(), str(dtype)))
            for name, dtype in frame.schema.items()
        ]
    )


def frame_metadata(
    frame: pl.DataFrame, preview_columns: Sequence[str], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Standard metadata for a DataFrame output plus the stage's own figures."""
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": column_schema(frame),
        "content_hash": content_hash(frame) if frame.height else "empty",
        "preview": dg.MetadataValue.md(markdown_preview(frame, preview_columns)),
        **(extra or {}),
    }


def frame_output(
    frame: pl.DataFrame,
    preview_columns: Sequence[str],
    extra: Mapping[str, Any] | None = None,
    output_name: str | None = None,
) -> dg.MaterializeResult | dg.Output:
    """A result whose data version is the content hash, so staleness in the UI is honest."""
    metadata = frame_metadata(frame, preview_columns, extra)
    version = dg.DataVersion(str(metadata["content_hash"]))
    if output_name:
        return dg.Output(frame, output_name=output_name, metadata=metadata, data_version=version)
    return dg.MaterializeResult(value=frame, metadata=metadata, data_version=version)


def generation_metadata(
    cached: CachedEngine, accepted_rows: int, prices: PriceTable | None = None
) -> dict[str, Any]:
    """Token economics, cache use and failed requests of one generating stage."""
    identity = cached.identity
    failures = failure_metadata(cached.failures, cached.stats.requests)
    return {
        **economics_metadata(cached.stats, accepted_rows, identity, prices),
        "engine_requests": cached.stats.engine_calls,
        "generation_failures": failures["generation_failures"],
        "generation_failures_retryable": failures["generation_failures_retryable"],
        "generation_failures_permanent": failures["generation_failures_permanent"],
        "generation_failures_by_reason": dg.MetadataValue.json(
            failures["generation_failures_by_reason"]
        ),
        "generation_failures_by_class": dg.MetadataValue.json(
            failures["generation_failures_by_class"]
        ),
        "invalid_answers": cached.stats.invalid_answers,
        "invalid_cache_entries": cached.stats.cache_invalid,
        "usage_estimated": cached.stats.usage_estimated,
        "served_models": dg.MetadataValue.json(cached.stats.served_models),
        "model": f"{identity.backend}:{identity.model}@{identity.revision}",
        "smoke_model": identity.is_smoke_model,
    }
