"""Which verified samples to keep and how much each should count in training.

Rejection sampling (Llama 2/3 style best-of-N): within each prompt group keep only the
samples whose judge/reward score reaches the group's percentile (default p90), and
record that threshold. Inverse weighting: verified samples from the sparse parts of the
seed distribution (low embedding density, or a rare task type) get a higher weight, so
a mix is not dominated by the easy, common problems that models already solve.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class GroupThreshold:
    group: str
    threshold: float | None
    scored: int
    kept: int


def percentile_filter(
    rows: Sequence[Mapping[str, Any]],
    *,
    group_key: str = "prompt",
    score_key: str = "score",
    percentile: float = 90.0,
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[GroupThreshold]]:
    """(kept, dropped, thresholds). Unscored rows lose to scored ones in the same group;
    a group with no scores at all is kept whole (threshold None: nothing to rank by)."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row[group_key])].append(row)
    kept: list[Mapping[str, Any]] = []
    dropped: list[Mapping[str, Any]] = []
    thresholds = []
    for group, members in groups.items():
        scores = [float(m[score_key]) for m in members if m.get(score_key) is not None]
        if not scores:
            kept.extend(members)
            thresholds.append(GroupThreshold(group, None, 0, len(members)))
            continue
        threshold = float(np.percentile(scores, percentile))
        group_kept = 0
        for m in members:
            score = m.get(score_key)
            if score is not None and float(score) >= threshold - 1e-9:
                kept.append(m)
                group_kept += 1
            else:
                dropped.append(m)
        thresholds.append(GroupThreshold(group, threshold, len(scores), group_kept))
    return kept, dropped, thresholds


def hashing_embed(texts: Sequence[str], dims: int = 1024) -> np.ndarray:
    """L2-normalised TF-IDF over hashed word uni- and bigrams: a CPU-cheap text embedding."""
    counts = np.zeros((len(texts), dims), dtype=np.float32)
    for i, text in enumerate(texts):
        words = _TOKEN.findall(text.lower())
        for gram in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            counts[i, zlib.crc32(gram.encode()) % dims] += 1.0
    tf = np.log1p(counts)
    df = (counts > 0).sum(axis=0)
    idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
    vectors = tf * idf
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def knn_density(
    queries: np.ndarray, reference: np.ndarray, k: int = 5, chunk: int = 512
) -> np.ndarray:
    """Mean cosine similarity of each query to its k nearest reference vectors (higher =
    denser). Queries are members of `reference`, so each one's best match (itself) is skipped."""
    if len(reference) < 2:
        return np.ones(len(queries), dtype=np.float32)
    k = min(k, len(reference) - 1)
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ reference.T
        top = -np.sort(-np.partition(sims, -(k + 1), axis=1)[:, -(k + 1) :], axis=1)
        out[start : start + chunk] = top[:, 1:].mean(axis=1)
    return out


def rarity(
    texts: Sequence[str],
    task_types: Sequence[str],
    queries: Sequence[int],
    *,
    k: int = 5,
    low_density_quantile: float = 0.1,
    rare_task_share: float = 0.05,
    embed: Embedder | None = None,
    probe_size: int = 1000,
) -> list[str | None]:
    """Why each queried problem is rare in the seed distribution `texts`, or None if common.

    'rare_task_type': its task type is under `rare_task_share` of all seeds.
    'low_density': its kNN density is below the `low_density_quantile` of the seeds'
    densities (estimated on an evenly spaced probe of at most `probe_size` seeds).
    """
    if not queries:
        return []
    vectors = (embed or hashing_embed)(texts)
    probe = list(range(0, len(texts), max(1, len(texts) // probe_size)))
    cutoff = float(np.quantile(knn_density(vectors[probe], vectors, k), low_density_quantile))
    density = knn_density(vectors[list(queries)], vectors, k)
    shares = Counter(task_types)
    out: list[str | None] = []
    for index, dens in zip(queries, density, strict=True):
        if shares[task_types[index]] / len(texts) < rare_task_share:
            out.append("rare_task_type")
        elif dens < cutoff:
            out.append("low_density")
        else:
            out.append(None)
    return out


def inverse_weights(
    problem_ids: Sequence[str],
    rare_reason_by_problem: Mapping[str, str | None],
    multiplier: float = 5.0,
) -> list[tuple[float, str | None]]:
    """(weight, reason) for each verified sample, from its problem's rarity."""
    out = []
    for pid in problem_ids:
        reason = rare_reason_by_problem.get(pid)
        out.append((multiplier, reason) if reason else (1.0, None))
    return out
