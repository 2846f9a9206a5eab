"""The curation steps over a mix frame: no text, decontamination, near-duplicates, anchors.

Each step keeps some rows and rejects the others; every row gets the step's verdict
(passing on kept rows, failing with its reason on rejected ones), so a rejected row says
why it went and a kept row says what it went through. `curate_mix` runs them in order:
a leaked row must go whatever else is true of it, a human row is kept over its synthetic
near-copies, and only the stages that restate human text are held to the anchor window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synth_lib.curation.anchor_filter import AnchorResult, MiniLMEmbedder, anchor_filter
from synth_lib.curation.decontam import (
    BenchmarkIndex,
    DecontamConfig,
    Match,
    file_items,
    humaneval_items,
)
from synth_lib.curation.dedup import DedupConfig, DedupResult, find_duplicates
from synth_lib.curation.drift import drift_metrics

NO_TEXT = "no text: text, prompt and response are all empty"


def benchmark_index(spec: Mapping[str, Any]) -> BenchmarkIndex:
    """The benchmarks and overlap settings named in a config dump or a recorded check spec."""
    items = humaneval_items() if spec["humaneval"] else []
    for path in spec["benchmark_paths"]:
        items += file_items(path)
    config = DecontamConfig(
        ngram=spec["ngram"], min_overlap=spec["min_overlap"], containment=spec["containment"]
    )
    return BenchmarkIndex(items, config)


def bounds(low: Mapping[str, float], high: Mapping[str, float]) -> dict[str, tuple]:
    """Per-metric (low, high) bounds from two one-sided tables."""
    return {k: (low.get(k), high.get(k)) for k in sorted({*low, *high})}


def text_view(frame: pl.DataFrame) -> pl.Series:
    """`text`, or prompt + response where a row has no text."""
    pair = pl.concat_str(
        [pl.col(c) for c in ("prompt", "response") if c in frame.columns],
        separator="\n\n",
        ignore_nulls=True,
    )
    text = pl.col("text") if "text" in frame.columns else pl.lit(None, pl.Utf8)
    return frame.select(pl.coalesce(text, pair, pl.lit("")).alias("text")).get_column("text")


def with_verdict(
    frame: pl.DataFrame,
    name: str,
    passed: bool,
    score: Sequence[float] | None,
    reason: Sequence[str] | None,
) -> pl.DataFrame:
    """Append one verdict per row; `score`/`reason` are per-row lists or None."""
    n = frame.height
    verdict = pl.struct(
        pl.lit(name).alias("name"),
        pl.lit(passed).alias("passed"),
        pl.Series("score", score if score is not None else [None] * n, dtype=pl.Float64),
        pl.Series("reason", reason if reason is not None else [None] * n, dtype=pl.Utf8),
    )
    return frame.with_columns(pl.col("verdicts").list.concat(pl.concat_list(verdict)))


def decontaminate(
    frame: pl.DataFrame, index: BenchmarkIndex
) -> tuple[pl.DataFrame, pl.DataFrame, list[Match | None]]:
    """(kept, leaked, per-row matches) against the benchmark index, on the `_text` column."""
    matches = index.scan(frame.get_column("_text").to_list())
    leaked = pl.Series([m is not None for m in matches], dtype=pl.Boolean)
    found = [m for m in matches if m]
    rejected = with_verdict(
        frame.filter(leaked), "decontam", False, [m.score for m in found], [m.reason for m in found]
    )
    return with_verdict(frame.filter(~leaked), "decontam", True, None, None), rejected, matches


def in_dedup_scope(frame: pl.DataFrame) -> pl.Series:
    """Rows near-duplicate removal compares: all but preference pairs.

    A DPO pair shares its prompt and chosen answer with the SFT trace it was built from, by
    design, and trains another objective: it is not that trace's duplicate. Pairs are built
    at most `max_pairs_per_prompt` per prompt, so they are not clustered among themselves.
    """
    if "chosen" not in frame.columns:
        return pl.Series("in_scope", [True] * frame.height, dtype=pl.Boolean)
    return frame.get_column("chosen").is_null()


def near_duplicates(
    frame: pl.DataFrame, config: DedupConfig
) -> tuple[pl.DataFrame, pl.DataFrame, DedupResult]:
    """(kept, duplicates, clustering): one representative per near-duplicate cluster."""
    scope = in_dedup_scope(frame)
    compared, pairs = frame.filter(scope), frame.filter(~scope)
    result = find_duplicates(
        compared.get_column("_text").to_list(),
        keys=compared.get_column("id").to_list(),
        is_synthetic=compared.get_column("is_synthetic").fill_null(True).to_list(),
        config=config,
    )
    kept = pl.Series(result.kept, dtype=pl.Boolean)
    reasons = [r for r in result.reason if r]
    rejected = with_verdict(compared.filter(~kept), "dedup", False, None, reasons)
    survivors = pl.concat([compared.filter(kept), pairs], how="vertical_relaxed")
    return with_verdict(survivors, "dedup", True, None, None), rejected, result


def anchor_window(
    humans: pl.DataFrame, samples: pl.DataFrame, low: float, high: float
) -> tuple[pl.DataFrame, pl.DataFrame, AnchorResult | None]:
    """Synthetic rows inside the anchor window; None for the result when nothing to compare."""
    if not (humans.height and samples.height):
        return samples, samples.head(0), None
    result = anchor_filter(
        samples.get_column("_text").to_list(),
        humans.get_column("_text").to_list(),
        MiniLMEmbedder(),
        low,
        high,
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


@dataclass(frozen=True)
class CurationSettings:
    """What `curate_mix` needs beyond the benchmark index."""

    dedup: DedupConfig
    anchored_stages: Sequence[str]
    anchor_low: float
    anchor_high: float
    coverage_cosine: float


@dataclass
class CurationOutcome:
    """The curated rows, every rejected row by step, and what each step measured."""

    kept: pl.DataFrame
    empty: pl.DataFrame
    leaked: pl.DataFrame
    duplicates: pl.DataFrame
    drifted: pl.DataFrame
    matches: list[Match | None]
    dedup: DedupResult
    anchors: AnchorResult | None
    drift: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> list[pl.DataFrame]:
        return [self.empty, self.leaked, self.duplicates, self.drifted]


def curate_mix(
    mix: pl.DataFrame, index: BenchmarkIndex, settings: CurationSettings
) -> CurationOutcome:
    """Run every step in order over a mix; `kept` is sorted by id and has no helper column."""
    frame = mix.with_columns(text_view(mix).alias("_text"))
    blank = frame.get_column("_text").str.strip_chars() == ""
    empty = with_verdict(frame.filter(blank), "has_text", False, None, [NO_TEXT] * blank.sum())
    frame, leaked, matches = decontaminate(frame.filter(~blank), index)
    frame, duplicates, dedup = near_duplicates(frame, settings.dedup)
    return anchor_and_measure(frame, settings, empty, leaked, duplicates, matches, dedup)


def anchor_and_measure(
    frame: pl.DataFrame,
    settings: CurationSettings,
    empty: pl.DataFrame,
    leaked: pl.DataFrame,
    duplicates: pl.DataFrame,
    matches: list[Match | None],
    dedup: DedupResult,
) -> CurationOutcome:
    """The last steps over the deduplicated rows: anchor window, drift metrics, the outcome."""
    synthetic = frame.get_column("is_synthetic").fill_null(True)
    anchored = synthetic & frame.get_column("stage").is_in(list(settings.anchored_stages))
    humans, others = frame.filter(~synthetic), frame.filter(synthetic & ~anchored)
    samples, drifted, anchors = anchor_window(
        humans, frame.filter(anchored), settings.anchor_low, settings.anchor_high
    )
    vectors = (anchors.sample_vectors[anchors.kept], anchors.anchor_vectors) if anchors else ()
    metrics = drift_metrics(
        samples.get_column("_text").to_list(),
        humans.get_column("_text").to_list(),
        *vectors,
        coverage_cosine=settings.coverage_cosine,
    )
    kept = pl.concat([humans, others, samples], how="vertical_relaxed").sort("id").drop("_text")
    return CurationOutcome(
        kept=kept,
        empty=empty,
        leaked=leaked,
        duplicates=duplicates,
        drifted=drifted,
        matches=matches,
        dedup=dedup,
        anchors=anchors,
        drift=metrics,
    )
