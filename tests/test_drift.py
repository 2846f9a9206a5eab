"""Collapse and drift metrics, bounds and the trend plot."""

from pydoc_data.topics import topics

import numpy as np

from synth_lib.curation.drift import (
    anchor_coverage,
    distinct_n,
    drift_metrics,
    evaluate_bounds,
    kl_divergence,
    trend_markdown,
    trend_png,
)
from synth_lib.curation.shingles import tokenise

HUMAN = [" ".join(topics[name].split()[:60]) for name in sorted(topics)[:30]]


def test_identical_sets_have_ratio_one_and_zero_kl():
    metrics = drift_metrics(HUMAN, HUMAN)
    assert metrics["distinct_2_ratio"] == 1.0 and metrics["length_mean_ratio"] == 1.0
    assert metrics["kl_to_human"] == 0.0
    assert metrics["unigram_entropy"] == metrics["human_unigram_entropy"] > 5


def test_collapsed_synthetic_set_loses_diversity_and_moves_away():
    collapsed = [HUMAN[0]] * 30
    metrics = drift_metrics(collapsed, HUMAN)
    assert metrics["distinct_2_ratio"] < 0.2
    assert metrics["unigram_entropy"] < metrics["human_unigram_entropy"]
    assert metrics["kl_to_human"] > 1.0


def test_distinct_n_and_kl_by_hand():
    tokens = tokenise(["a b a b", "c"])
    assert distinct_n(tokens, 1) == 3 / 5
    assert distinct_n(tokens, 2) == 2 / 3  # "c" is shorter than 2: no bigram
    same = tokenise(["x y z"])
    assert kl_divergence(same, same) == 0.0
    assert kl_divergence(tokenise(["x x x x"]), tokenise(["y y y y"])) > 1.0


def test_anchor_coverage_counts_anchors_near_some_sample():
    anchors = np.eye(4)
    samples = np.array([[1.0, 0, 0, 0], [0, 0.8, 0.6, 0]])
    assert anchor_coverage(samples, anchors, min_cosine=0.7) == 0.5
    assert anchor_coverage(np.zeros((0, 4)), anchors) == 0.0
    metrics = drift_metrics(HUMAN[:2], HUMAN[2:4], samples, anchors)
    assert metrics["anchor_coverage"] == 0.75  # default radius: cosine 0.6 reaches anchor 2 too


def test_empty_side_gives_counts_only_and_bounds_skip_missing_metrics():
    metrics = drift_metrics([], HUMAN)
    assert metrics == {"synthetic_rows": 0, "human_rows": len(HUMAN)}
    assert evaluate_bounds(metrics, {"kl_to_human": (None, 1.0)}, {}) == ([], [])


def test_evaluate_bounds_splits_soft_and_hard():
    metrics = {"distinct_2_ratio": 0.4, "kl_to_human": 1.5, "length_mean_ratio": 1.0}
    soft = {
        "distinct_2_ratio": (0.8, None),
        "kl_to_human": (None, 1.0),
        "length_mean_ratio": (0.5, 2),
    }
    hard = {"distinct_2_ratio": (0.5, None), "kl_to_human": (None, 3.0)}
    warnings, errors = evaluate_bounds(metrics, soft, hard)
    assert warnings == [
        "distinct_2_ratio=0.4 below soft minimum 0.8",
        "kl_to_human=1.5 above soft maximum 1.0",
    ]
    assert errors == ["distinct_2_ratio=0.4 below hard minimum 0.5"]


def test_trend_plot_is_a_png():
    history = [{"kl_to_human": 0.1 * i, "distinct_2_ratio": 1 - 0.1 * i} for i in range(4)]
    history.append({"kl_to_human": None})
    png = trend_png(history, ["kl_to_human", "distinct_2_ratio"])
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert trend_markdown(history, ["kl_to_human"]).startswith(
        "![drift over runs](data:image/png;base64,"
    )
