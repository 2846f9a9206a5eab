"""Stratification: clusters, coverage entropy, and a budget that follows sparse coverage."""

import numpy as np
import pytest

from synth_lib.curation.stratify import (
    allocate,
    coverage_entropy,
    exemplars,
    plan_coverage,
    projection_png_markdown,
)


def blobs(centres, per, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    points = np.vstack([c + spread * rng.standard_normal((per, len(c))) for c in centres])
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


CENTRES = np.eye(4, dtype=np.float32)


def test_budget_reallocation_follows_coverage():
    counts = np.array([10, 0, 3, 1])
    plan = allocate(counts, 6)
    assert plan.sum() == 6 and plan[0] == 0  # the densest cluster gets nothing
    assert plan[1] >= plan[3] >= plan[2] >= plan[0]  # sparser clusters never get less
    assert coverage_entropy(counts + plan) > coverage_entropy(counts)


def test_a_cluster_takes_no_more_than_its_exemplars():
    assert allocate([0, 5], 4, capacity=[1, 10]).tolist() == [1, 3]
    assert allocate([0, 5], 4, capacity=[1, 0]).tolist() == [1, 0]  # the rest stays unspent


def test_coverage_entropy_bounds():
    assert coverage_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert coverage_entropy([20, 0, 0, 0]) == 0.0
    assert 0.0 < coverage_entropy([10, 1, 1, 1]) < 1.0


def test_plan_names_sparse_clusters_and_builds_prompts_from_their_exemplars():
    seeds = blobs(CENTRES, per=5)
    synthetic = blobs(CENTRES[:2], per=6, seed=1)  # only two regions were generated for
    plan = plan_coverage(seeds, synthetic, k=4, budget=8)
    covered = {int(plan.seed_labels[0]), int(plan.seed_labels[5])}  # clusters of blobs 0 and 1
    assert set(plan.sparse_clusters()) == set(range(4)) - covered
    assert all(plan.allocation[c] == 0 for c in covered)
    assert plan.allocation.sum() == 8
    for c in set(range(4)) - covered:
        assert len(plan.exemplar_indices[c]) == plan.allocation[c] == 4
        assert all(plan.seed_labels[i] == c for i in plan.exemplar_indices[c])
    e = plan.entropies()
    assert e["planned_entropy_stratified"] > e["planned_entropy_uniform"] > e["coverage_entropy"]


def test_exemplars_are_nearest_the_centroid_first():
    vectors = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    centroid = np.array([[0.6, 0.8]], dtype=np.float32)
    assert exemplars(0, vectors, np.zeros(3, dtype=int), centroid, 2) == [2, 1]


def test_projection_plot_renders():
    seeds = blobs(CENTRES, per=3)
    md = projection_png_markdown(seeds, seeds[:2], np.arange(12) % 4, "coverage")
    assert md.startswith("![coverage](data:image/png;base64,")
