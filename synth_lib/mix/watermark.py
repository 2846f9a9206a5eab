"""Green-list watermark (Kirchenbauer et al., 2023): "is this text ours?".

At each generation step the vocabulary is split, by a keyed hash of the previous
`context_width` tokens, into a green share `gamma` and a red rest; `delta` is added to
the green logits. Detection needs only the key and a tokenizer: count green tokens over
the text and test against the `gamma` expected by chance,
z = (green - gamma·T) / sqrt(T·gamma·(1 - gamma)).

The split is splitmix64 over (context seed + token id), computed the same way for a whole
vocabulary (numpy, while generating) and for one token (plain ints, while detecting), so
no random-number generator state is involved. The key never leaves this module's caller:
provenance records `key_id`, a hash of it.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

KEY_ENV = "SYNTH_WATERMARK_KEY"
DEFAULT_Z_THRESHOLD = 4.0
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix_int(x: int) -> int:
    x &= _MASK
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK
    return x ^ (x >> 31)


def _mix_array(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX2)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class WatermarkSpec:
    """Key and strength of the watermark; `repr` never shows the key."""

    key: str = field(repr=False)
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int = 1

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError(f"the watermark needs a secret key ({KEY_ENV})")
        if not 0 < self.gamma < 1:
            raise ValueError("gamma must be in (0, 1)")
        if self.context_width < 1:
            raise ValueError("context_width must be ≥ 1")

    @property
    def key_id(self) -> str:
        """What provenance records: identifies the key and settings, reveals neither."""
        material = f"synth-watermark|{self.key}|{self.gamma}|{self.context_width}"
        return hashlib.sha256(material.encode()).hexdigest()[:12]

    def _seed(self, context: Sequence[int]) -> int:
        material = f"{self.key}|{','.join(str(int(t)) for t in context)}".encode()
        return int.from_bytes(hashlib.sha256(material).digest()[:8], "little")

    def _cutoff(self) -> int:
        return int(self.gamma * (1 << 53))

    def green_mask(self, context: Sequence[int], vocab_size: int) -> np.ndarray:
        """Boolean mask of the green tokens after `context` (its last tokens count)."""
        seed = np.uint64(self._seed(context[-self.context_width :]))
        with np.errstate(over="ignore"):
            x = seed + np.arange(vocab_size, dtype=np.uint64) * np.uint64(_GOLDEN)
        return (_mix_array(x) >> np.uint64(11)) < np.uint64(self._cutoff())

    def is_green(self, context: Sequence[int], token: int) -> bool:
        x = self._seed(context[-self.context_width :]) + int(token) * _GOLDEN
        return (_mix_int(x) >> 11) < self._cutoff()


def spec_from_env(gamma: float = 0.25, delta: float = 2.0, context_width: int = 1) -> WatermarkSpec:
    """The spec with its key read from `SYNTH_WATERMARK_KEY` (raises if unset)."""
    return WatermarkSpec(os.environ.get(KEY_ENV, ""), gamma, delta, context_width)


class GreenListLogitsProcessor:
    """A `transformers` logits processor: adds `delta` to the green logits of each row.

    Masks are cached per context, so a batch costs one hash per distinct context.
    """

    def __init__(self, spec: WatermarkSpec, cache_size: int = 65536) -> None:
        self.spec = spec
        self._masks: dict[tuple[int, ...], np.ndarray] = {}
        self._cache_size = cache_size

    def _mask(self, context: tuple[int, ...], vocab_size: int) -> np.ndarray:
        mask = self._masks.get(context)
        if mask is None or mask.shape[0] != vocab_size:
            if len(self._masks) >= self._cache_size:
                self._masks.clear()
            mask = self._masks[context] = self.spec.green_mask(context, vocab_size)
        return mask

    def __call__(self, input_ids, scores):  # torch.LongTensor, torch.FloatTensor
        import torch

        width = self.spec.context_width
        contexts = [tuple(row) for row in input_ids[:, -width:].tolist()]
        masks = np.stack([self._mask(c, scores.shape[-1]) for c in contexts])
        bias = torch.from_numpy(masks).to(device=scores.device, dtype=scores.dtype)
        return scores + bias * self.spec.delta


@dataclass(frozen=True)
class Detection:
    """One text's score: green tokens among those scored, the z-score and the verdict."""

    z: float
    green: int
    scored: int
    watermarked: bool


def detect_tokens(
    spec: WatermarkSpec,
    token_ids: Sequence[int],
    z_threshold: float = DEFAULT_Z_THRESHOLD,
    ignore_repeated: bool = True,
) -> Detection:
    """Score token ids; each (context, token) pair counts once when `ignore_repeated`, so
    repetitive text (lists, code) cannot pile up green tokens by chance."""
    width = spec.context_width
    seen: set[tuple[int, ...]] = set()
    green = scored = 0
    for i in range(width, len(token_ids)):
        gram = tuple(int(t) for t in token_ids[i - width : i + 1])
        if ignore_repeated:
            if gram in seen:
                continue
            seen.add(gram)
        scored += 1
        green += spec.is_green(gram[:-1], gram[-1])
    if scored == 0:
        return Detection(0.0, 0, 0, False)
    g = spec.gamma
    z = (green - g * scored) / math.sqrt(scored * g * (1 - g))
    return Detection(z, green, scored, z >= z_threshold)


def watermark_engine(engine, spec: WatermarkSpec):
    """Switch the watermark on for every request of `engine` (one with `logits_processors`,
    i.e. the transformers backend). Its revision gains `+wm.<key id>`: provenance names the
    key, the response cache keeps watermarked and plain answers apart."""
    if not hasattr(engine, "logits_processors"):
        raise ValueError(
            f"the {engine.identity.backend} backend cannot watermark (transformers can)"
        )
    engine.logits_processors.append(GreenListLogitsProcessor(spec))
    revision = f"{engine.identity.revision}+wm.{spec.key_id}"
    engine.identity = replace(engine.identity, revision=revision)
    return engine
