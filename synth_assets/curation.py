"""`decontaminated_mix`: the training mix without benchmark leaks, duplicates or drifted rows.

Order: rows without text go, then decontamination (a leaked row must go whatever else is
true of it), near-duplicate clustering (a human row is kept over its synthetic
near-copies), and the anchor window for the synthetic stages that restate human text.
Kept rows get a passing verdict per step; removed rows are written with their failing
verdict to `curation_rejects/rejected.parquet`. Drift metrics go into the metadata of
every materialization; the trend plot reads the previous ones back from the Dagster
instance (no side file to keep in sync).
"""

import math
import os
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from resources.engine import GenerationEngine
from resources.parquet_io import OPTIONAL_INPUT
from resources.storage import SynthStorage
from synth_assets.common import frame_metadata, frame_output
from synth_assets.partitions import SHARDED
from synth_lib.curation.anchor_filter import MiniLMEmbedder, embed
from synth_lib.curation.coverage_round import COVERAGE_ROUND_SHARD, coverage_round_rows
from synth_lib.curation.decontam import BenchmarkIndex, DecontamConfig
from synth_lib.curation.dedup import DedupConfig
from synth_lib.curation.drift import evaluate_bounds, trend_markdown
from synth_lib.curation.incremental import benchmark_digest, curate_shards, fresh_staging
from synth_lib.curation.quality import (
    CausalLMPerplexity,
    QualityThresholds,
    reason_counts,
    score_texts,
)
from synth_lib.curation.quality_gates import DEFAULT_STAGES, run_gates
from synth_lib.curation.steps import (
    CurationSettings,
    benchmark_index,
    bounds,
    text_view,
)
from synth_lib.curation.stratify import plan_coverage, projection_png_markdown
from synth_lib.engines.factory import resolve_model_dir
from synth_lib.mix.shards import accepted_only, to_mix_schema
from synth_lib.provenance.rollback import active_entries, drop_rolled_back, removed_by
from synth_lib.provenance.schema import content_hash
from synth_lib.reporting import counts_table, histogram_png_markdown
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
PREVIEW_ROWS = 5
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


def _write_rejects(storage: SynthStorage, rejected: pl.LazyFrame) -> tuple[int, str]:
    """Removed rows with their failing verdict, streamed from the staged shards and replaced
    atomically on every run."""
    target = storage.stage_dir("curation_rejects")
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".rejected.{os.getpid()}.tmp"
    rejected.sink_parquet(staging)
    os.replace(staging, target / "rejected.parquet")
    rows = pl.scan_parquet(target / "rejected.parquet").select(pl.len()).collect().item()
    return rows, str(target / "rejected.parquet")


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
    code_version="curation-3",
    ins={
        "training_mix": dg.AssetIn(),
        "stratified_instructions": dg.AssetIn(metadata={OPTIONAL_INPUT: True}),
    },
    deps=["rollbacks"],
    automation_condition=AFTER_NEW_SHARDS,
)
def decontaminated_mix(
    context: dg.AssetExecutionContext,
    config: CurationConfig,
    storage: SynthStorage,
    training_mix: dict[str, pl.LazyFrame],
    stratified_instructions: pl.DataFrame,
) -> dg.MaterializeResult:
    """Every shard of the mix after decontamination, near-duplicate removal and anchors.

    The coverage round (`stratified_instructions`, planned over all shards) is curated as one
    more shard, `coverage-round`, when it has been materialized.

    Shard by shard, with persisted per-shard work (`synth_lib.curation.incremental`): a new
    shard is scanned, hashed and embedded once and compared against the stored index of the
    others. Each shard's curated rows are staged on disk and the value is a lazy scan of them,
    which the IO manager streams into the asset's file: no step holds the whole mix.
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
    coverage_round, round_report = coverage_round_rows(stratified_instructions)
    if round_report.entering:
        shards[COVERAGE_ROUND_SHARD] = loader(COVERAGE_ROUND_SHARD, coverage_round.lazy())
    spec = config.model_dump(
        include={"benchmark_paths", "humaneval", "ngram", "min_overlap", "containment"}
    )
    outcome, work = curate_shards(
        shards,
        index,
        benchmark_digest(spec, config.benchmark_paths),
        settings,
        storage.stage_dir("curation_index"),
        fresh_staging(storage.stage_dir("curation_staging"), context.run_id),
    )
    if outcome.removed["has_text"]:
        context.log.warning(
            f"{outcome.removed['has_text']} mix rows have no text, prompt or response"
        )
    anchored_kept = outcome.kept.select(pl.col("stage").is_in(config.anchored_stages).any())
    if outcome.anchors is None and anchored_kept.collect().item():
        context.log.warning("no human rows in the mix: anchor filtering skipped")
    anchors, metrics, out = outcome.anchors, outcome.drift, outcome.kept
    rejected_rows, rejected_path = _write_rejects(storage, outcome.rejected)
    extra = {
        "input_rows": sum(input_rows.values()),
        "shards": len(shards),
        "coverage_round": dg.MetadataValue.json(round_report.as_dict()),
        "shards_indexed_now": work["shards_indexed"],
        "rows_indexed_now": work["rows_indexed"],
        "shards_resigned_now": work["shards_resigned"],
        "removed_by_rollback": sum(rolled_back_rows.values()),
        "rows_without_text": outcome.removed["has_text"],
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
    metadata = _streamed_metadata(out, ["stage", "text", "id"], extra)
    # the IO manager streams the staged shards into the asset's file
    return dg.MaterializeResult(
        value=out,
        metadata=metadata,
        data_version=dg.DataVersion(str(metadata["content_hash"])),
    )


def _streamed_metadata(
    lazy: pl.LazyFrame, preview_columns: list[str], extra: dict
) -> dict[str, Any]:
    """`frame_metadata` of a lazy frame, reading only its ids and first rows."""
    ids = lazy.select("id").collect()
    metadata = frame_metadata(lazy.head(PREVIEW_ROWS).collect(), preview_columns, extra)
    metadata["dagster/row_count"] = ids.height
    metadata["content_hash"] = content_hash(ids) if ids.height else "empty"
    return metadata


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


QUALITY_INPUTS = {
    "rephrasings": "rephrasing",
    "instructions": "instruction",
    "dialogues": "dialogue",
    "code_explanations": "code_explanation",
    "cot_traces": "reasoning",
    "search_traces": "reasoning",
}
QUALITY_SCHEMA = {
    "id": pl.Utf8, "stage": pl.Utf8, "kind": pl.Utf8, "words": pl.Int64,
    "mean_word_len": pl.Float64, "symbol_ratio": pl.Float64, "bullet_lines": pl.Float64,
    "ellipsis_lines": pl.Float64, "alpha_words": pl.Float64, "dup_ngram_share": pl.Float64,
    "dup_line_share": pl.Float64, "compression_ratio": pl.Float64, "density": pl.Float64,
    "stopword_share": pl.Float64, "perplexity": pl.Float64, "quality_passed": pl.Boolean,
    "quality_score": pl.Float64, "quality_reason": pl.Utf8,
}  # fmt: skip


class QualityConfig(dg.Config):
    """Thresholds of the quality verdict (null switches a check off) and the perplexity model."""

    perplexity_model: str = Field(
        default="",
        description="Local weights folder for perplexity; empty: the engine's local model "
        "(transformers backend) or the default model; 'off': no perplexity signal.",
    )
    max_perplexity: float | None = Field(default=2000.0, description="Highest perplexity kept.")
    min_words: int | None = Field(default=3, description="Fewest words kept.")
    max_dup_ngram_share: float | None = Field(
        default=0.5, description="Highest share of repeated word 3-grams."
    )
    min_compression_ratio: float | None = Field(
        default=0.15, description="Lowest zlib ratio (texts of 200+ bytes); loops compress well."
    )
    min_density: float | None = Field(
        default=0.2, description="Lowest unique content words per word (filler is low)."
    )
    max_symbol_ratio: float | None = Field(default=0.2, description="Highest '#'/'...' per word.")


def _perplexity_scorer(config: QualityConfig, engine: GenerationEngine):
    """The perplexity model, or (None, why not)."""
    if config.perplexity_model == "off":
        return None, "off"
    folder = config.perplexity_model
    if not folder and engine.backend == "transformers":
        try:
            folder = str(resolve_model_dir(engine.model, engine.models_dir))
        except (FileNotFoundError, ImportError, OSError) as exc:
            return None, f"off: {exc}"
    if not folder:
        return None, f"off: the {engine.backend} backend has no local weights to score with"
    return CausalLMPerplexity(folder, device=engine.device), folder


@dg.asset(
    group_name="curation",
    kinds={"polars"},
    code_version="quality-1",
    ins={name: dg.AssetIn() for name in QUALITY_INPUTS},
    **SHARDED,
)
def quality_scores(
    context: dg.AssetExecutionContext,
    config: QualityConfig,
    engine: GenerationEngine,
    **inputs: pl.DataFrame,
) -> dg.MaterializeResult:
    """Per-row quality signals and verdict of the shard's accepted synthetic rows."""
    frames = [to_mix_schema(accepted_only(inputs[n]), kind) for n, kind in QUALITY_INPUTS.items()]
    rows = pl.concat(frames).select("id", "stage", "kind", "text")
    scorer, model = _perplexity_scorer(config, engine)
    thresholds = QualityThresholds(
        min_words=config.min_words,
        max_symbol_ratio=config.max_symbol_ratio,
        max_dup_ngram_share=config.max_dup_ngram_share,
        min_compression_ratio=config.min_compression_ratio,
        min_density=config.min_density,
        max_perplexity=config.max_perplexity,
    )
    scored = score_texts(rows.get_column("text").to_list(), thresholds, scorer)
    frame = pl.DataFrame(
        [{**meta, **s} for meta, s in zip(rows.drop("text").to_dicts(), scored, strict=True)],
        schema=QUALITY_SCHEMA,
    )
    passed = int(frame.get_column("quality_passed").sum()) if frame.height else 0
    ppl = [v for v in frame.get_column("perplexity").to_list() if v is not None]
    extra = {
        "rows": frame.height,
        "passed": passed,
        "pass_rate": round(passed / frame.height, 4) if frame.height else 0.0,
        "perplexity_model": model,
        "failure_reasons": dg.MetadataValue.md(counts_table(reason_counts(scored))),
        "perplexity_histogram": dg.MetadataValue.md(
            histogram_png_markdown([math.log10(v) for v in ppl], "perplexity", "log10 perplexity")
        ),
        "density_histogram": dg.MetadataValue.md(
            histogram_png_markdown(frame.get_column("density").to_list(), "density", "density")
        ),
        "compression_histogram": dg.MetadataValue.md(
            histogram_png_markdown(
                frame.get_column("compression_ratio").to_list(), "compression", "zlib ratio"
            )
        ),
    }
    return frame_output(frame, ["stage", "quality_passed", "quality_reason", "perplexity"], extra)


PLOT_TITLE = "seeds (colour: cluster) vs synthetic rows (x)"
COVERAGE_SCHEMA = {
    "cluster": pl.Int64, "seeds": pl.Int64, "synthetic_rows": pl.Int64, "share": pl.Float64,
    "sparse": pl.Boolean, "allocated": pl.Int64, "exemplar_ids": pl.List(pl.Utf8),
    "centroid": pl.List(pl.Float32),
}  # fmt: skip


class CoverageConfig(dg.Config):
    """Clusters of the seed space and the budget of the next, coverage-driven round."""

    k: int = Field(default=6, description="k-means clusters over the seed embeddings.")
    budget: int = Field(default=1, description="Rows the next round generates (allocated).")
    max_seeds: int = Field(
        default=200, description="Text seeds embedded, first by id (0: all; scale up with k)."
    )
    seed: int = Field(default=0, description="k-means seed.")


def _collected(lazy: pl.LazyFrame) -> pl.DataFrame:
    """All materialized shards; an upstream with none is an empty frame without columns."""
    return lazy.collect() if lazy.collect_schema().len() else pl.DataFrame()


def _texts(frame: pl.DataFrame, kind: str) -> list[str]:
    if not frame.width:
        return []
    return to_mix_schema(accepted_only(frame), kind).get_column("text").to_list()


@dg.asset(group_name="curation", kinds={"polars"}, code_version="coverage-1")
def coverage(
    context: dg.AssetExecutionContext,
    config: CoverageConfig,
    text_seeds: pl.LazyFrame,
    rephrasings: pl.LazyFrame,
    instructions: pl.LazyFrame,
    dialogues: pl.LazyFrame,
) -> dg.MaterializeResult:
    """Where accepted synthetic rows fall among clusters of the seeds; sparse clusters named,
    the next round's budget allocated inversely to coverage, exemplars chosen."""
    seeds = _collected(text_seeds)
    seeds = seeds.select("id", "text").sort("id") if seeds.width else pl.DataFrame()
    if config.max_seeds:
        seeds = seeds.head(config.max_seeds)
    frames = {"rephrasings": rephrasings, "instructions": instructions, "dialogues": dialogues}
    synthetic = [t for n, lazy in frames.items() for t in _texts(_collected(lazy), n)]
    if seeds.is_empty():
        context.log.warning("no text seeds: nothing to stratify")
        return frame_output(pl.DataFrame(schema=COVERAGE_SCHEMA), ["cluster"], {"k": 0})
    embedder = MiniLMEmbedder()
    seed_vectors = embed(embedder, seeds.get_column("text").to_list())
    synthetic_vectors = embed(embedder, synthetic) if synthetic else seed_vectors[:0]
    plan = plan_coverage(seed_vectors, synthetic_vectors, config.k, config.budget, config.seed)
    ids = seeds.get_column("id").to_list()
    total = max(plan.counts.sum(), 1.0)
    frame = pl.DataFrame(
        [
            {
                "cluster": c,
                "seeds": int((plan.seed_labels == c).sum()),
                "synthetic_rows": int(plan.counts[c]),
                "share": round(float(plan.counts[c] / total), 4),
                "sparse": c in plan.sparse_clusters(),
                "allocated": int(plan.allocation[c]),
                "exemplar_ids": [ids[i] for i in plan.exemplar_indices[c]],
                "centroid": plan.centroids[c].tolist(),
            }
            for c in range(plan.k)
        ],
        schema=COVERAGE_SCHEMA,
    )
    extra = {
        "k": plan.k,
        "seeds": seeds.height,
        "synthetic_rows": len(synthetic),
        **plan.entropies(),
        "sparse_clusters": dg.MetadataValue.json(plan.sparse_clusters()),
        "projection": dg.MetadataValue.md(
            projection_png_markdown(seed_vectors, synthetic_vectors, plan.seed_labels, PLOT_TITLE)
        ),
    }
    return frame_output(frame, ["cluster", "seeds", "synthetic_rows", "sparse", "allocated"], extra)
