"""`decontaminated_mix`: the training mix without benchmark leaks, duplicates or drifted rows.

Order: rows without text go, then decontamination (a leaked row must go whatever else is
true of it), near-duplicate clustering (a human row is kept over its synthetic
near-copies), and the anchor window for the synthetic stages that restate human text.
Kept rows get a passing verdict per step; removed rows are written with their failing
verdict to `curation_rejects/rejected.parquet`. Drift metrics go into the metadata of
every materialization; the trend plot reads the previous ones back from the Dagster
instance (no side file to keep in sync).
"""

import os

import dagster as dg
import polars as pl
from pydantic import Field

from resources.storage import SynthStorage
from synth_assets.common import frame_metadata
from synth_lib.anchor_filter import MiniLMEmbedder, anchor_filter
from synth_lib.decontam import BenchmarkIndex, DecontamConfig, file_items, humaneval_items
from synth_lib.dedup import DedupConfig, find_duplicates
from synth_lib.drift import drift_metrics, evaluate_bounds, trend_markdown
from synth_lib.quality_gates import DEFAULT_STAGES, run_gates
from synth_lib.reporting import counts_table

ASSET = "decontaminated_mix"
NO_TEXT = "no text: text, prompt and response are all empty"
TREND_METRICS = ("distinct_2_ratio", "kl_to_human", "length_mean_ratio", "anchor_coverage")


class CurationConfig(dg.Config):
    """Benchmarks, thresholds and bounds for turning the training mix into a defensible one."""

    benchmark_paths: list[str] = Field(
        default_factory=lambda: [p for p in [os.environ.get("SYNTH_GSM8K_TEST_PATH", "")] if p],
        description="Benchmark JSONL/Parquet files (text column guessed: question, prompt, ...). "
        "Default: SYNTH_GSM8K_TEST_PATH when set.",
    )
    humaneval: bool = Field(default=True, description="Decontaminate against HumanEval too.")
    ngram: int = Field(default=13, description="Word n-gram overlap size (13 GPT-3, 8 Llama 3).")
    min_overlap: int = Field(
        default=1, description="Shared n-grams that flag a row (4 with ngram 8, as Llama 3)."
    )
    containment: float = Field(
        default=DecontamConfig.containment,
        description="Share of an item's bigram weight in a row that flags the row.",
    )
    dedup_ngram: int = Field(default=3, description="Words per MinHash shingle.")
    dedup_threshold: float = Field(
        default=0.5,
        description="Estimated Jaccard of shingle sets at or above which rows are duplicates "
        "(0.5 on word 3-grams: about a tenth of the words changed).",
    )
    dedup_max_shingle_share: float = Field(
        default=0.05,
        description="Shingles in more than this share of rows are template, not content, and "
        "are ignored (1.0: keep all).",
    )
    anchor_low: float = Field(default=0.65, description="Below this best anchor cosine: drift.")
    anchor_high: float = Field(default=0.92, description="Above it: redundant with an anchor.")
    anchored_stages: list[str] = Field(
        default=["rephrasings"],
        description="Synthetic stages that restate human text: their rows must fall inside the "
        "anchor window, and the drift metrics compare them with the human rows. Verified or "
        "templated stages (code, execution traces, reasoning) are judged by their own checks.",
    )
    coverage_cosine: float = Field(default=0.6, description="Anchor counts as covered above it.")
    soft_min: dict[str, float] = Field(
        default={"distinct_2_ratio": 0.8, "anchor_coverage": 0.3, "length_mean_ratio": 0.5},
        description="WARN when a drift metric falls below.",
    )
    soft_max: dict[str, float] = Field(
        default={"kl_to_human": 1.0, "length_mean_ratio": 2.0},
        description="WARN when a drift metric rises above.",
    )
    hard_min: dict[str, float] = Field(
        default={"distinct_2_ratio": 0.5, "length_mean_ratio": 0.2},
        description="ERROR (blocks downstream) when a drift metric falls below.",
    )
    hard_max: dict[str, float] = Field(
        default={"kl_to_human": 3.0, "length_mean_ratio": 5.0},
        description="ERROR (blocks downstream) when a drift metric rises above.",
    )
    allowed_stages: list[str] = Field(
        default=list(DEFAULT_STAGES), description="Stage labels the quality gates accept."
    )


def benchmark_index(spec: dict) -> BenchmarkIndex:
    """The benchmarks and overlap settings named in a config dump or a recorded check spec."""
    items = humaneval_items() if spec["humaneval"] else []
    for path in spec["benchmark_paths"]:
        items += file_items(path)
    config = DecontamConfig(
        ngram=spec["ngram"], min_overlap=spec["min_overlap"], containment=spec["containment"]
    )
    return BenchmarkIndex(items, config)


def text_view(frame: pl.DataFrame) -> pl.Series:
    """`text`, or prompt + response where a row has no text."""
    pair = pl.concat_str(
        [pl.col(c) for c in ("prompt", "response") if c in frame.columns],
        separator="\n\n",
        ignore_nulls=True,
    )
    text = pl.col("text") if "text" in frame.columns else pl.lit(None, pl.Utf8)
    return frame.select(pl.coalesce(text, pair, pl.lit("")).alias("text")).get_column("text")


def with_verdict(frame: pl.DataFrame, name: str, passed: bool, score, reason) -> pl.DataFrame:
    """Append one verdict per row; `score`/`reason` are per-row lists or None."""
    n = frame.height
    verdict = pl.struct(
        pl.lit(name).alias("name"),
        pl.lit(passed).alias("passed"),
        pl.Series("score", score if score is not None else [None] * n, dtype=pl.Float64),
        pl.Series("reason", reason if reason is not None else [None] * n, dtype=pl.Utf8),
    )
    return frame.with_columns(pl.col("verdicts").list.concat(pl.concat_list(verdict)))


def _history(context: dg.AssetExecutionContext, limit: int = 20) -> list[dict]:
    """Drift metrics of the previous materializations, oldest first."""
    records = context.instance.fetch_materializations(dg.AssetKey(ASSET), limit=limit).records
    out = []
    for record in reversed(records):
        value = record.asset_materialization.metadata.get("drift_metrics")
        if value is not None:
            out.append(dict(value.value))
    return out


def _recorded_spec(context: dg.AssetCheckExecutionContext) -> dict:
    """What the latest materialization was checked against (defaults if nothing recorded)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(ASSET))
    value = event.asset_materialization.metadata.get("check_spec") if event else None
    defaults = CurationConfig()
    return {
        **defaults.model_dump(),
        "soft_bounds": _bounds(defaults.soft_min, defaults.soft_max),
        "hard_bounds": _bounds(defaults.hard_min, defaults.hard_max),
        **(dict(value.value) if value is not None else {}),
    }


def _decontaminate(frame: pl.DataFrame, index: BenchmarkIndex) -> tuple[pl.DataFrame, ...]:
    matches = index.scan(frame.get_column("_text").to_list())
    leaked = pl.Series([m is not None for m in matches], dtype=pl.Boolean)
    found = [m for m in matches if m]
    rejected = with_verdict(
        frame.filter(leaked), "decontam", False, [m.score for m in found], [m.reason for m in found]
    )
    return with_verdict(frame.filter(~leaked), "decontam", True, None, None), rejected, matches


def _dedup(frame: pl.DataFrame, config: CurationConfig) -> tuple[pl.DataFrame, ...]:
    result = find_duplicates(
        frame.get_column("_text").to_list(),
        keys=frame.get_column("id").to_list(),
        is_synthetic=frame.get_column("is_synthetic").fill_null(True).to_list(),
        config=DedupConfig(
            ngram=config.dedup_ngram,
            threshold=config.dedup_threshold,
            max_shingle_share=config.dedup_max_shingle_share,
        ),
    )
    kept = pl.Series(result.kept, dtype=pl.Boolean)
    reasons = [r for r in result.reason if r]
    rejected = with_verdict(frame.filter(~kept), "dedup", False, None, reasons)
    return with_verdict(frame.filter(kept), "dedup", True, None, None), rejected, result


def _anchor(humans: pl.DataFrame, samples: pl.DataFrame, config: CurationConfig):
    """Synthetic rows inside the anchor window; None for the result when nothing to compare."""
    if not (humans.height and samples.height):
        return samples, samples.head(0), None
    result = anchor_filter(
        samples.get_column("_text").to_list(),
        humans.get_column("_text").to_list(),
        MiniLMEmbedder(),
        config.anchor_low,
        config.anchor_high,
        anchor_keys=humans.get_column("id").to_list(),
    )
    inside = pl.Series(result.kept, dtype=pl.Boolean)
    best = result.best.astype(float)
    rejected = with_verdict(
        samples.filter(~inside),
        "anchor_window",
        False,
        best[~result.kept].tolist(),
        [r for r in result.reason if r],
    )
    kept = with_verdict(
        samples.filter(inside), "anchor_window", True, best[result.kept].tolist(), None
    )
    return kept, rejected, result


def _bounds(low: dict[str, float], high: dict[str, float]) -> dict[str, tuple]:
    return {k: (low.get(k), high.get(k)) for k in sorted({*low, *high})}


def _write_rejects(storage: SynthStorage, rejected: list[pl.DataFrame]) -> tuple[int, str]:
    """Removed rows with their failing verdict, replaced atomically on every run."""
    frame = pl.concat([r.drop("_text") for r in rejected], how="vertical_relaxed")
    target = storage.stage_dir("curation_rejects")
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".rejected.{os.getpid()}.tmp"
    frame.write_parquet(staging)
    os.replace(staging, target / "rejected.parquet")
    return frame.height, str(target / "rejected.parquet")


def _drift_result(context: dg.AssetCheckExecutionContext, hard: bool) -> dg.AssetCheckResult:
    """Judge the drift metrics the latest materialization recorded against its bounds."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(ASSET))
    recorded = event.asset_materialization.metadata.get("drift_metrics") if event else None
    metrics = dict(recorded.value) if recorded is not None else {}
    spec = _recorded_spec(context)
    soft, hard_bounds = spec["soft_bounds"], spec["hard_bounds"]
    warnings, errors = evaluate_bounds(metrics, soft, hard_bounds)
    found = errors if hard else warnings
    measured = metrics.get("synthetic_rows", 0)
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR if hard else dg.AssetCheckSeverity.WARN,
        description="; ".join(found)
        or f"all drift metrics within bounds ({measured} synthetic rows measured)",
        metadata={
            "breaches": dg.MetadataValue.json(found),
            "bounds": dg.MetadataValue.json(hard_bounds if hard else soft),
        },
    )


@dg.asset(group_name="curation", kinds={"polars"}, code_version="curation-1")
def decontaminated_mix(
    context: dg.AssetExecutionContext,
    config: CurationConfig,
    storage: SynthStorage,
    training_mix: pl.DataFrame,
) -> dg.MaterializeResult:
    """The training mix after decontamination, near-duplicate removal and anchor filtering."""
    index = benchmark_index(config.model_dump())
    frame = training_mix.with_columns(text_view(training_mix).alias("_text"))
    blank = frame.get_column("_text").str.strip_chars() == ""
    empty = with_verdict(frame.filter(blank), "has_text", False, None, [NO_TEXT] * blank.sum())
    if empty.height:
        context.log.warning(f"{empty.height} mix rows have no text, prompt or response")
    frame, leaked, matches = _decontaminate(frame.filter(~blank), index)
    frame, duplicates, dedup = _dedup(frame, config)
    synthetic = frame.get_column("is_synthetic").fill_null(True)
    anchored = synthetic & frame.get_column("stage").is_in(config.anchored_stages)
    humans, others = frame.filter(~synthetic), frame.filter(synthetic & ~anchored)
    samples, drifted, anchors = _anchor(humans, frame.filter(anchored), config)
    if anchors is None and samples.height:
        context.log.warning("no human rows in the mix: anchor filtering skipped")
    out = pl.concat([humans, others, samples], how="vertical_relaxed").sort("id")

    vectors = (anchors.sample_vectors[anchors.kept], anchors.anchor_vectors) if anchors else ()
    metrics = drift_metrics(
        samples.get_column("_text").to_list(),
        humans.get_column("_text").to_list(),
        *vectors,
        coverage_cosine=config.coverage_cosine,
    )
    rejected_rows, rejected_path = _write_rejects(storage, [empty, leaked, duplicates, drifted])
    spec = config.model_dump(
        include={"benchmark_paths", "humaneval", "ngram", "min_overlap", "containment"}
    )
    extra = {
        "input_rows": training_mix.height,
        "rows_without_text": empty.height,
        "flagged_by_benchmark": dg.MetadataValue.json(index.counts(matches)),
        "check_spec": dg.MetadataValue.json(
            {
                **spec,
                "allowed_stages": config.allowed_stages,
                "soft_bounds": _bounds(config.soft_min, config.soft_max),
                "hard_bounds": _bounds(config.hard_min, config.hard_max),
            }
        ),
        "dedup": dg.MetadataValue.json(dedup.stats()),
        "anchor_drop_reasons": dg.MetadataValue.md(
            counts_table(anchors.reason_counts() if anchors else {}, "reason")
        ),
        "rejected_rows": rejected_rows,
        "rejected_path": dg.MetadataValue.path(rejected_path),
        "drift_metrics": dg.MetadataValue.json(metrics),
        "drift_trend": dg.MetadataValue.md(
            trend_markdown([*_history(context), metrics], TREND_METRICS)
        ),
    }
    out = out.drop("_text")
    metadata = frame_metadata(out, ["stage", "text", "id"], extra)
    return dg.MaterializeResult(
        value=out,
        metadata=metadata,
        data_version=dg.DataVersion(str(metadata["content_hash"])),
    )


def leak_check(frame: pl.DataFrame, index: BenchmarkIndex) -> dg.AssetCheckResult:
    """Fail when any row of `frame` still matches a benchmark item."""
    matches = index.scan(text_view(frame).to_list()) if frame.height else []
    found = [m.reason for m in matches if m]
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(found)} rows still match a benchmark item" if found else "no leaks",
        metadata={
            "flagged": len(found),
            "examples": dg.MetadataValue.json(found[:10]),
            "by_benchmark": dg.MetadataValue.json(index.counts(matches)),
        },
    )


@dg.asset_check(asset=ASSET, blocking=True, description="No row matches a benchmark item.")
def decontaminated_mix_no_benchmark_leak(
    context: dg.AssetCheckExecutionContext, decontaminated_mix: pl.DataFrame
) -> dg.AssetCheckResult:
    """Re-scans the stored rows against the benchmarks the materialization recorded."""
    spec = _recorded_spec(context)
    index = benchmark_index(spec)
    return leak_check(decontaminated_mix, index)


@dg.asset_check(asset=ASSET, blocking=True, description="Great Expectations quality gates.")
def decontaminated_mix_quality_gates(
    context: dg.AssetCheckExecutionContext, decontaminated_mix: pl.DataFrame
) -> dg.AssetCheckResult:
    """Schema, non-null provenance, unique ids, weight > 0, stage and is_synthetic labels."""
    stages = _recorded_spec(context)["allowed_stages"]
    success, summary = run_gates(decontaminated_mix, allowed_stages=stages)
    return dg.AssetCheckResult(
        passed=success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(summary['failed'])} of {summary['evaluated']} expectations failed",
        metadata={
            "failed": dg.MetadataValue.json(summary["failed"]),
            "results": dg.MetadataValue.json(summary["results"]),
        },
    )


@dg.asset_check(asset=ASSET, description="Collapse/drift metrics within the soft bounds.")
def decontaminated_mix_drift_soft(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return _drift_result(context, hard=False)


@dg.asset_check(
    asset=ASSET, blocking=True, description="Collapse/drift metrics within the hard bounds."
)
def decontaminated_mix_drift_hard(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return _drift_result(context, hard=True)
