"""Collapse and drift metrics of a synthetic text set against its human baseline.

Model collapse shows up as shrinking diversity (distinct-n, unigram entropy), a token
distribution that moves away from human text (KL divergence), lengths that wander, and
synthetic samples that cluster around a few anchors while the rest of the human
embedding space goes uncovered. Distinct-n and entropy depend on how much text is
counted, so both sides are cut to the same token budget before counting.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from synth_lib.curation.anchor_filter import nearest
from synth_lib.curation.shingles import Tokens, ngram_hashes, tokenise, unique_counts

Bounds = Mapping[str, Sequence[float | None]]
# rows per side (synthetic, human) the text metrics of a curated mix are computed on
DRIFT_SAMPLE_ROWS = 20_000


def _truncate(tokens: Tokens, budget: int) -> Tokens:
    """The first `budget` tokens, texts cut where the budget runs out."""
    offsets = np.minimum(tokens.offsets, budget)
    return Tokens(hashes=tokens.hashes[:budget], offsets=offsets)


def distinct_n(tokens: Tokens, n: int) -> float:
    """Distinct word n-grams over all n-grams (n-grams never cross texts)."""
    doc, grams = ngram_hashes(tokens, n)
    grams = grams[tokens.lengths[doc] >= n]  # a text shorter than n has no real n-gram
    if not len(grams):
        return 0.0
    return len(unique_counts(grams)[0]) / len(grams)


def _distribution(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    return unique_counts(tokens.hashes)


def unigram_entropy(tokens: Tokens) -> float:
    """Shannon entropy of the word distribution, in bits."""
    _, counts = _distribution(tokens)
    if not len(counts):
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def kl_divergence(synthetic: Tokens, human: Tokens, alpha: float = 0.5) -> float:
    """KL(synthetic || human) in bits over the union vocabulary, add-`alpha` smoothed."""
    words_s, counts_s = _distribution(synthetic)
    words_h, counts_h = _distribution(human)
    vocab = unique_counts(np.concatenate([words_s, words_h]))[0]
    if not len(vocab):
        return 0.0
    p = np.full(len(vocab), alpha)
    q = np.full(len(vocab), alpha)
    p[np.searchsorted(vocab, words_s)] += counts_s
    q[np.searchsorted(vocab, words_h)] += counts_h
    p, q = p / p.sum(), q / q.sum()
    return float((p * np.log2(p / q)).sum())


def covered_anchors(samples: np.ndarray, anchors: np.ndarray, min_cosine: float = 0.6) -> int:
    """How many anchors have their nearest sample within the cosine radius."""
    if not len(anchors) or not len(samples):
        return 0
    best, _ = nearest(anchors, samples)
    return int((best >= min_cosine).sum())


def anchor_coverage(samples: np.ndarray, anchors: np.ndarray, min_cosine: float = 0.6) -> float:
    """Share of anchors whose nearest sample is within the cosine radius."""
    if not len(anchors):
        return 0.0
    return covered_anchors(samples, anchors, min_cosine) / len(anchors)


def drift_metrics(
    synthetic: Sequence[str],
    human: Sequence[str],
    synthetic_vectors: np.ndarray | None = None,
    human_vectors: np.ndarray | None = None,
    coverage_cosine: float = 0.6,
) -> dict[str, float | int | None]:
    """All metrics as a flat dict; ratios compare synthetic to human (1.0 = same)."""
    metrics: dict[str, float | int | None] = {
        "synthetic_rows": len(synthetic),
        "human_rows": len(human),
    }
    if not synthetic or not human:
        return metrics
    syn, hum = tokenise(synthetic), tokenise(human)
    budget = int(min(len(syn.hashes), len(hum.hashes)))
    syn_b, hum_b = _truncate(syn, budget), _truncate(hum, budget)
    for n in (1, 2, 3):
        d_syn, d_hum = distinct_n(syn_b, n), distinct_n(hum_b, n)
        metrics[f"distinct_{n}"] = round(d_syn, 4)
        metrics[f"human_distinct_{n}"] = round(d_hum, 4)
        metrics[f"distinct_{n}_ratio"] = round(d_syn / d_hum, 4) if d_hum else None
    metrics["unigram_entropy"] = round(unigram_entropy(syn_b), 4)
    metrics["human_unigram_entropy"] = round(unigram_entropy(hum_b), 4)
    metrics["kl_to_human"] = round(kl_divergence(syn, hum), 4)
    for name, tokens in (("length", syn), ("human_length", hum)):
        lengths = tokens.lengths.astype(np.float64)
        metrics[f"{name}_mean"] = round(float(lengths.mean()), 2)
        metrics[f"{name}_var"] = round(float(lengths.var()), 2)
    human_mean = float(metrics["human_length_mean"] or 0.0)
    metrics["length_mean_ratio"] = (
        round(float(metrics["length_mean"] or 0.0) / human_mean, 4) if human_mean else None
    )
    if synthetic_vectors is not None and human_vectors is not None:
        coverage = anchor_coverage(synthetic_vectors, human_vectors, coverage_cosine)
        metrics["anchor_coverage"] = round(coverage, 4)
    return metrics


class DriftSample:
    """The `k` rows with the smallest ids among all rows added, shard by shard.

    Ids are content hashes, so this is a uniform sample that does not depend on shard order
    or shard boundaries, and memory stays at `k` texts however large the mix; a mix with at
    most `k` rows on a side is measured whole.
    """

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0
        self.rows = pl.DataFrame(schema={"id": pl.Utf8, "text": pl.Utf8})

    def add(self, ids: pl.Series, texts: pl.Series) -> None:
        self.seen += len(ids)
        rows = pl.concat([self.rows, pl.DataFrame({"id": ids, "text": texts})]).sort("id")
        # copied out: a slice of polars strings keeps the whole shard's text buffers alive
        self.rows = pl.DataFrame(rows.head(self.k).to_dict(as_series=False), self.rows.schema)

    def texts(self) -> list[str]:
        """The sampled texts in id order (the metrics' token budget cuts in that order)."""
        return self.rows.get_column("text").to_list()


def sampled_drift_metrics(
    synthetic: DriftSample, human: DriftSample, coverage: float | None
) -> dict[str, float | int | None]:
    """`drift_metrics` over the two samples; row counts are of every row added, and
    `anchor_coverage` is the share given (summed exactly over shards, not sampled)."""
    metrics = drift_metrics(synthetic.texts(), human.texts())
    measured = {"synthetic_rows_measured": metrics["synthetic_rows"]}
    measured["human_rows_measured"] = metrics["human_rows"]
    metrics |= {"synthetic_rows": synthetic.seen, "human_rows": human.seen, **measured}
    if coverage is not None and synthetic.seen and human.seen:
        metrics["anchor_coverage"] = round(coverage, 4)
    return metrics


def evaluate_bounds(
    metrics: Mapping[str, float | int | None], soft: Bounds, hard: Bounds
) -> tuple[list[str], list[str]]:
    """(warnings, errors): each metric outside its [low, high] bound, None meaning open.

    A metric that was not computed (None or absent) is not judged.
    """

    def breaches(bounds: Bounds, kind: str) -> list[str]:
        out = []
        for name, (low, high) in bounds.items():
            value = metrics.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if low is not None and value < low:
                out.append(f"{name}={value} below {kind} minimum {low}")
            if high is not None and value > high:
                out.append(f"{name}={value} above {kind} maximum {high}")
        return out

    return breaches(soft, "soft"), breaches(hard, "hard")


def trend_png(history: Sequence[Mapping[str, float | int | None]], names: Sequence[str]) -> bytes:
    """A PNG of each named metric over runs (oldest first), one small panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(names) or ["synthetic_rows"]
    fig, axes = plt.subplots(len(names), 1, figsize=(5, 1.5 * len(names)), dpi=90, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        values = [h.get(name) for h in history]
        xs = [i for i, v in enumerate(values) if v is not None]
        ax.plot(xs, [values[i] for i in xs], marker="o", color="#4f6df5")
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("run (oldest → newest)", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def trend_markdown(
    history: Sequence[Mapping[str, float | int | None]], names: Sequence[str]
) -> str:
    """The trend plot as a Markdown image with an inline PNG (renders in the Dagster UI)."""
    encoded = base64.b64encode(trend_png(history, names)).decode()
    return f"![drift over runs](data:image/png;base64,{encoded})"
