"""The curation steps over a mix frame: no text, decontamination, near-duplicates, anchors.

Each step keeps some rows and rejects the others; every row gets the step's verdict
(passing on kept rows, failing with its reason on rejected ones), so a rejected row says
why it went and a kept row says what it went through. `curate_mix` runs them in order:
a leaked row must go whatever else is true of it, a human row is kept over its synthetic
near-copies, and only the stages that restate human text are held to the anchor window.
The anchor window and the drift metrics go shard by shard (`anchor_shard`, `Measure`), so
the one-shot `curate_mix` and the incremental `curate_shards` share them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synth_lib.curation.anchor_filter import Embedder, MiniLMEmbedder, anchor_filter
from synth_lib.curation.decontam import (
    BenchmarkIndex,
    DecontamConfig,
    Match,
    file_items,
    humaneval_items,
)
from synth_lib.curation.dedup import DedupConfig, DedupResult, find_duplicates
from synth_lib.curation.drift import (
    DRIFT_SAMPLE_ROWS,
    DriftSample,
    covered_anchors,
    sampled_drift_metrics,
)

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


@dataclass(frozen=True)
class CurationSettings:
    """What `curate_mix` needs beyond the benchmark index."""

    dedup: DedupConfig
    anchored_stages: Sequence[str]
    anchor_low: float
    anchor_high: float
    coverage_cosine: float
    # rows per side the text drift metrics are computed on (see `drift.DriftSample`)
    drift_sample_rows: int = DRIFT_SAMPLE_ROWS


@dataclass(frozen=True)
class ShardAnchors:
    """The anchor window over one shard: each anchored sample's verdict, and the coverage
    of the shard's human rows by the samples kept (the drift metrics' `anchor_coverage`)."""

    ids: list[str]
    best: np.ndarray
    nearest: list[str | None]
    kept: np.ndarray
    reason: list[str | None]
    anchors: int
    covered: int


def judge_anchors(
    humans: pl.DataFrame,
    samples: pl.DataFrame,
    own: int,
    settings: CurationSettings,
    embedder: Embedder,
) -> ShardAnchors:
    """Embed a shard's anchored samples and human rows and judge each sample's best cosine.

    The first `own` human rows are the shard's; the rest are root seeds of its samples held
    by other shards: anchors here, counted for coverage in their own shard.
    """
    result = anchor_filter(
        samples.get_column("_text").to_list(),
        humans.get_column("_text").to_list(),
        embedder,
        settings.anchor_low,
        settings.anchor_high,
        anchor_keys=humans.get_column("id").to_list(),
    )
    covered = covered_anchors(
        result.sample_vectors[result.kept], result.anchor_vectors[:own], settings.coverage_cosine
    )
    return ShardAnchors(
        ids=samples.get_column("id").to_list(),
        best=result.best.astype(np.float32),
        nearest=result.nearest_anchor,
        kept=result.kept,
        reason=result.reason,
        anchors=own,
        covered=covered,
    )


@dataclass
class AnchorSummary:
    """The anchor window over every shard judged: drop reasons and coverage, summed."""

    judged: int = 0
    anchors: int = 0
    covered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, shard: ShardAnchors) -> None:
        self.judged += len(shard.ids)
        self.anchors += shard.anchors
        self.covered += shard.covered
        for reason in shard.reason:
            if reason:
                kind = reason.split(":", 1)[0]
                self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def reason_counts(self) -> dict[str, int]:
        return dict(self.reasons)


# judges one shard's (humans, anchored samples, own humans), both frames non-empty
Judge = Callable[[pl.DataFrame, pl.DataFrame, int], ShardAnchors]


@dataclass(frozen=True)
class AnchoredShard:
    """One shard after the anchor window: kept rows (sorted by id), drifted rows, and what the
    drift metrics read (`humans`, `samples` kept), all still with the `_text` column."""

    kept: pl.DataFrame
    drifted: pl.DataFrame
    anchors: ShardAnchors | None
    humans: pl.DataFrame
    samples: pl.DataFrame


def anchored(frame: pl.DataFrame, settings: CurationSettings) -> pl.Series:
    """Rows of the synthetic stages held to the anchor window."""
    synthetic = frame.get_column("is_synthetic").fill_null(True)
    return synthetic & frame.get_column("stage").is_in(list(settings.anchored_stages))


def foreign_roots(
    frame: pl.DataFrame, settings: CurationSettings, shard_ids: Collection[str]
) -> set[str]:
    """Root seeds of a shard's anchored rows that the shard (all of `shard_ids`) lacks."""
    roots = frame.filter(anchored(frame, settings)).get_column("root_seed_ids").explode()
    return set(roots.drop_nulls().to_list()) - set(shard_ids)


def anchor_shard(
    frame: pl.DataFrame,
    settings: CurationSettings,
    judge: Judge,
    foreign: pl.DataFrame | None = None,
) -> AnchoredShard:
    """The anchor window over one shard's deduplicated rows: its anchored samples are judged
    against its own human rows and, where a sample's root seed lives in another shard, that
    seed (`foreign`: id and `_text` of surviving human rows; the mix puts a synthetic row's
    seeds in its shard, so this is usually empty)."""
    synthetic = frame.get_column("is_synthetic").fill_null(True)
    is_anchored = anchored(frame, settings)
    humans, others = frame.filter(~synthetic), frame.filter(synthetic & ~is_anchored)
    samples = frame.filter(is_anchored)
    extra = foreign.sort("id") if foreign is not None else pl.DataFrame()
    if not ((humans.height or extra.height) and samples.height):
        kept = pl.concat([humans, others, samples], how="vertical_relaxed").sort("id")
        return AnchoredShard(kept, samples.head(0), None, humans, samples)
    compared = humans.select("id", "_text")
    if extra.height:
        compared = pl.concat([compared, extra.select("id", "_text")])
    anchors = judge(compared, samples, humans.height)
    order = {key: i for i, key in enumerate(anchors.ids)}
    at = np.array([order[key] for key in samples.get_column("id").to_list()], dtype=np.int64)
    inside, best = anchors.kept[at], anchors.best[at].astype(float)
    mask = pl.Series(inside, dtype=pl.Boolean)
    reasons = [anchors.reason[i] for i in at[~inside]]
    drifted = with_verdict(
        samples.filter(~mask), "anchor_window", False, best[~inside].tolist(), reasons
    )
    inside_rows = with_verdict(
        samples.filter(mask), "anchor_window", True, best[inside].tolist(), None
    )
    kept = pl.concat([humans, others, inside_rows], how="vertical_relaxed").sort("id")
    return AnchoredShard(kept, drifted, anchors, humans, inside_rows)


class Measure:
    """What the anchor window and the drift metrics sum over shards, one shard at a time:
    anchor reasons and coverage exactly, the text metrics over a bounded sample."""

    def __init__(self, settings: CurationSettings) -> None:
        self.settings = settings
        self.summary: AnchorSummary | None = None
        self.synthetic = DriftSample(settings.drift_sample_rows)
        self.human = DriftSample(settings.drift_sample_rows)

    def add(self, shard: AnchoredShard) -> None:
        if shard.anchors is not None:
            self.summary = self.summary or AnchorSummary()
            self.summary.add(shard.anchors)
        self.human.add(shard.humans.get_column("id"), shard.humans.get_column("_text"))
        self.synthetic.add(shard.samples.get_column("id"), shard.samples.get_column("_text"))

    def drift(self) -> dict[str, Any]:
        summary = self.summary
        coverage = summary.covered / summary.anchors if summary and summary.anchors else None
        return sampled_drift_metrics(self.synthetic, self.human, coverage)


@dataclass
class CurationOutcome:
    """The curated rows, every removed row, and what each step measured.

    `kept` is sorted by id within each shard, shards in the order given (one shard: the whole
    mix sorted by id); `rejected` holds the removed rows of each shard in step order, each
    with its failing verdict last. Both are frames in memory (`curate_mix`) or lazy scans of
    staged files (`incremental.curate_shards`).
    """

    kept: pl.DataFrame | pl.LazyFrame
    rejected: pl.DataFrame | pl.LazyFrame
    removed: dict[str, int]
    matches: list[Match]
    dedup: DedupResult
    anchors: AnchorSummary | None
    drift: dict[str, Any] = field(default_factory=dict)


def curate_mix(
    mix: pl.DataFrame,
    index: BenchmarkIndex,
    settings: CurationSettings,
    shard_column: str | None = None,
    embedder: Embedder | None = None,
) -> CurationOutcome:
    """Run every step in order over a mix held in memory.

    The anchor window judges the rows of each value of `shard_column` together, as
    `curate_shards` does per shard (None: the whole mix is one shard); that column only
    groups rows and is dropped from every output, as the `_text` helper column is.
    """
    frame = mix.with_columns(text_view(mix).alias("_text"))
    blank = frame.get_column("_text").str.strip_chars() == ""
    empty = with_verdict(frame.filter(blank), "has_text", False, None, [NO_TEXT] * blank.sum())
    frame, leaked, matches = decontaminate(frame.filter(~blank), index)
    frame, duplicates, dedup = near_duplicates(frame, settings.dedup)
    model = embedder or MiniLMEmbedder()
    measure = Measure(settings)
    kept, drifted = [], []
    groups = frame.partition_by(shard_column, maintain_order=True) if shard_column else [frame]
    humans = frame.filter(~frame.get_column("is_synthetic").fill_null(True))
    for group in groups or [frame]:
        foreign = None
        if shard_column and group.height:
            name = group.get_column(shard_column)[0]
            own = mix.filter(pl.col(shard_column) == name).get_column("id")
            roots = foreign_roots(group, settings, own.to_list())
            foreign = humans.filter(pl.col("id").is_in(list(roots)))
        shard = anchor_shard(
            group,
            settings,
            lambda h, s, own: judge_anchors(h, s, own, settings, model),
            foreign,
        )
        measure.add(shard)
        kept.append(shard.kept)
        drifted.append(shard.drifted)
    helpers = ["_text", *([shard_column] if shard_column else [])]
    steps = {
        "has_text": empty,
        "decontam": leaked,
        "dedup": duplicates,
        "anchor_window": pl.concat(drifted, how="vertical_relaxed"),
    }
    return CurationOutcome(
        kept=pl.concat(kept, how="vertical_relaxed").drop(helpers),
        rejected=pl.concat(list(steps.values()), how="vertical_relaxed").drop(helpers),
        removed={name: part.height for name, part in steps.items()},
        matches=[m for m in matches if m],
        dedup=dedup,
        anchors=measure.summary,
        drift=measure.drift(),
    )
