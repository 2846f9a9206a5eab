"""Latent-space stratification: find the regions of the seed space synthetic data leaves sparse.

Seeds are embedded (MiniLM) and clustered with k-means; every synthetic row is assigned
to its nearest centroid, so the per-cluster counts say where generation has gone and
where it has not. Coverage entropy (Shannon entropy of those counts over the clusters,
divided by log k: 1.0 is even coverage) summarises it. The next round's budget is
allocated inversely to coverage by water-filling: each unit goes to the cluster that has
the fewest rows so far, which is the allocation that raises the entropy most, and its
prompts are built from that cluster's exemplars (the seeds nearest its centroid).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def kmeans(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, unit-length centroids) of k-means over unit vectors (k capped at the rows)."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(vectors)))
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(vectors)
    centroids = model.cluster_centers_.astype(np.float32)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return model.labels_.astype(np.int64), centroids / np.where(norms > 0, norms, 1.0)


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Nearest centroid (highest cosine) of every row."""
    if not len(vectors):
        return np.zeros(0, dtype=np.int64)
    return np.argmax(vectors @ centroids.T, axis=1).astype(np.int64)


def counts_per_cluster(labels: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels, minlength=k).astype(np.float64)


def coverage_entropy(counts: Sequence[float] | np.ndarray) -> float:
    """Shannon entropy of the counts over the clusters, / log k (1.0: even; 0.0: one cluster)."""
    counts = np.asarray(counts, dtype=np.float64)
    k, total = len(counts), counts.sum()
    if k < 2 or total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(k))


def allocate(
    counts: Sequence[float] | np.ndarray,
    budget: int,
    capacity: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Water-filling: each of `budget` units goes to the cluster with the fewest rows so far
    (ties: the lower index). Sparse clusters get more, and never less than denser ones. A
    cluster takes at most `capacity` units (its distinct exemplars); budget no cluster can
    take is left unspent."""
    current = np.asarray(counts, dtype=np.float64).copy()
    room = np.full(len(current), np.inf) if capacity is None else np.asarray(capacity, float)
    out = np.zeros(len(current), dtype=np.int64)
    for _ in range(max(budget, 0)):
        open_ = np.flatnonzero(out < room)
        if not len(open_):
            break
        target = int(open_[np.argmin(current[open_])])
        out[target] += 1
        current[target] += 1
    return out


def uniform_allocation(seed_labels: np.ndarray, k: int, budget: int) -> np.ndarray:
    """What plain generation spends per cluster, in expectation: the budget spread over seeds."""
    seeds = counts_per_cluster(seed_labels, k)
    return budget * seeds / seeds.sum() if seeds.sum() else np.zeros(k)


def exemplars(
    cluster: int, vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray, n: int
) -> list[int]:
    """Indices of the `n` seeds of `cluster` nearest its centroid, nearest first."""
    members = np.flatnonzero(labels == cluster)
    order = np.argsort(-(vectors[members] @ centroids[cluster]), kind="stable")
    return [int(i) for i in members[order][:n]]


@dataclass(frozen=True)
class CoveragePlan:
    """Clusters of the seeds, where synthetic rows fall, and the next round's allocation."""

    seed_labels: np.ndarray
    centroids: np.ndarray
    synthetic_labels: np.ndarray
    counts: np.ndarray
    allocation: np.ndarray
    exemplar_indices: list[list[int]]

    @property
    def k(self) -> int:
        return len(self.centroids)

    def entropies(self) -> dict[str, float]:
        """Coverage entropy now, and after the planned round vs plain generation (same budget)."""
        budget = int(self.allocation.sum())
        uniform = uniform_allocation(self.seed_labels, self.k, budget)
        return {
            "coverage_entropy": round(coverage_entropy(self.counts), 4),
            "planned_entropy_stratified": round(coverage_entropy(self.counts + self.allocation), 4),
            "planned_entropy_uniform": round(coverage_entropy(self.counts + uniform), 4),
        }

    def sparse_clusters(self) -> list[int]:
        """Clusters holding fewer synthetic rows than an even share would give them."""
        even = self.counts.sum() / self.k
        return [int(c) for c in np.flatnonzero(self.counts < even)]


def plan_coverage(
    seed_vectors: np.ndarray, synthetic_vectors: np.ndarray, k: int, budget: int, seed: int = 0
) -> CoveragePlan:
    """Cluster the seeds, count synthetic rows per cluster, allocate `budget` to sparse ones."""
    labels, centroids = kmeans(seed_vectors, k, seed)
    k = len(centroids)
    synthetic = assign(synthetic_vectors, centroids)
    counts = counts_per_cluster(synthetic, k)
    allocation = allocate(counts, budget, capacity=counts_per_cluster(labels, k).astype(int))
    examples = [exemplars(c, seed_vectors, labels, centroids, int(allocation[c])) for c in range(k)]
    return CoveragePlan(labels, centroids, synthetic, counts, allocation, examples)


def projection_png_markdown(
    seed_vectors: np.ndarray, synthetic_vectors: np.ndarray, seed_labels: np.ndarray, title: str
) -> str:
    """A 2-D PCA projection: seeds coloured by cluster, synthetic rows as black crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = np.vstack([seed_vectors, synthetic_vectors]) if len(synthetic_vectors) else seed_vectors
    centred = both - both.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    seeds, synthetic = points[: len(seed_vectors)], points[len(seed_vectors) :]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=90)
    ax.scatter(seeds[:, 0], seeds[:, 1], c=seed_labels, cmap="tab10", s=14, label="seeds")
    if len(synthetic):
        ax.scatter(synthetic[:, 0], synthetic[:, 1], c="black", marker="x", s=18,
                   label="synthetic")  # fmt: skip
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def entropy_after(counts: np.ndarray, vectors: np.ndarray, centroids: np.ndarray) -> float:
    """Coverage entropy once rows with these embeddings join the counts."""
    added = counts_per_cluster(assign(vectors, centroids), len(centroids)) if len(vectors) else 0
    return round(coverage_entropy(counts + added), 4)
