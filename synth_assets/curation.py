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
from synth_lib.curation.decontam import BenchmarkIndex, DecontamConfig
from synth_lib.curation.dedup import DedupConfig
from synth_lib.curation.drift import evaluate_bounds, trend_markdown
from synth_lib.curation.incremental import benchmark_digest, curate_shards
from synth_lib.curation.quality_gates import DEFAULT_STAGES, run_gates
from synth_lib.curation.steps import (
    CurationSettings,
    benchmark_index,
    bounds,
    text_view,
)
from synth_lib.provenance.rollback import active_entries, drop_rolled_back, removed_by
from synth_lib.reporting import counts_table
from synth_lib.seeds.seed_dir import benchmark_dir_files
from synth_lib.seeds.sharding import shard_sort_key

ASSET = "decontaminated_mix"
# refresh once new shards of the mix land and nothing upstream is still running, and only
# when the upstream blocking checks passed
AFTER_NEW_SHARDS = (
    dg.AutomationCondition.any_deps_updated()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("after new shards, upstream checks passed")
TREND_METRICS = ("distinct_2_ratio", "kl_to_human", "length_mean_ratio", "anchor_coverage")


class CurationConfig(dg.Config):
    """Benchmarks, thresholds and bounds for turning the training mix into a defensible one."""

    benchmark_paths: list[str] = Field(
        default_factory=lambda: (
            [p for p in [os.environ.get("SYNTH_GSM8K_TEST_PATH", "")] if p]
            + benchmark_dir_files(os.environ.get("SYNTH_BENCHMARK_DIR", ""))
        ),
        description="Benchmark JSONL/Parquet files (text column guessed: question, prompt, ...). "
        "Default: SYNTH_GSM8K_TEST_PATH when set, and every file in SYNTH_BENCHMARK_DIR.",
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
        "soft_bounds": bounds(defaults.soft_min, defaults.soft_max),
        "hard_bounds": bounds(defaults.hard_min, defaults.hard_max),
        **(dict(value.value) if value is not None else {}),
    }


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


@dg.asset(
    group_name="curation",
    kinds={"polars"},
    code_version="curation-2",
    deps=["rollbacks"],
    automation_condition=AFTER_NEW_SHARDS,
)
def decontaminated_mix(
    context: dg.AssetExecutionContext,
    config: CurationConfig,
    storage: SynthStorage,
    training_mix: dict[str, pl.LazyFrame],
) -> dg.MaterializeResult:
    """Every shard of the mix after decontamination, near-duplicate removal and anchors.

    Shard by shard, with persisted per-shard work (`synth_lib.curation.incremental`): a new
    shard is scanned and hashed once and compared against the stored index of the others.
    """
    index = benchmark_index(config.model_dump())
    settings = CurationSettings(
        dedup=DedupConfig(
            ngram=config.dedup_ngram,
            threshold=config.dedup_threshold,
            max_shingle_share=config.dedup_max_shingle_share,
        ),
        anchored_stages=config.anchored_stages,
        anchor_low=config.anchor_low,
        anchor_high=config.anchor_high,
        coverage_cosine=config.coverage_cosine,
    )
    if not training_mix:
        raise dg.Failure("no shard of training_mix is materialized yet: run synth_shards first")
    entries = active_entries(storage.home)
    rolled_back_rows: dict[str, int] = {}
    input_rows: dict[str, int] = {}

    def loader(shard: str, lazy: pl.LazyFrame):
        def load() -> pl.DataFrame:
            # a rollback recorded since the mix was built applies here too
            frame = lazy.collect()
            kept, rolled_back = drop_rolled_back(frame, removed_by(entries, [frame]))
            rolled_back_rows[shard], input_rows[shard] = rolled_back.height, frame.height
            return kept

        return load

    shards = {
        shard: loader(shard, training_mix[shard])
        for shard in sorted(training_mix, key=shard_sort_key)
    }
    spec = config.model_dump(
        include={"benchmark_paths", "humaneval", "ngram", "min_overlap", "containment"}
    )
    outcome, work = curate_shards(
        shards,
        index,
        benchmark_digest(spec, config.benchmark_paths),
        settings,
        storage.stage_dir("curation_index"),
    )
    if outcome.empty.height:
        context.log.warning(f"{outcome.empty.height} mix rows have no text, prompt or response")
    if (
        outcome.anchors is None
        and outcome.kept.get_column("stage").is_in(config.anchored_stages).any()
    ):
        context.log.warning("no human rows in the mix: anchor filtering skipped")
    anchors, metrics, out = outcome.anchors, outcome.drift, outcome.kept
    rejected_rows, rejected_path = _write_rejects(storage, outcome.rejected)
    extra = {
        "input_rows": sum(input_rows.values()),
        "shards": len(shards),
        "shards_indexed_now": work["shards_indexed"],
        "rows_indexed_now": work["rows_indexed"],
        "removed_by_rollback": sum(rolled_back_rows.values()),
        "rows_without_text": outcome.empty.height,
        "flagged_by_benchmark": dg.MetadataValue.json(index.counts(outcome.matches)),
        "check_spec": dg.MetadataValue.json(
            {
                **spec,
                "allowed_stages": config.allowed_stages,
                "soft_bounds": bounds(config.soft_min, config.soft_max),
                "hard_bounds": bounds(config.hard_min, config.hard_max),
            }
        ),
        "dedup": dg.MetadataValue.json(outcome.dedup.stats()),
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
