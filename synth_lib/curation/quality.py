"""Per-row quality signals combined into one `quality` verdict ("semantic density pruning").

Signals, each cheap and explainable: perplexity under a small language model (fluency;
noise scores in the thousands), repetition (share of duplicated word 3-grams and lines),
compression ratio (zlib bytes / raw bytes: filler and loops compress well), Gopher-style
heuristics (Rae et al., 2021: word count, mean word length, symbol-to-word ratio, bullet
and ellipsis lines, share of words with a letter) and FineWeb-style line checks (lines
ending in punctuation, duplicated lines), plus lexical density (unique content words per
word: filler is low). A row fails on the first threshold it breaks, named in the reason;
`score` is the share of checks passed. Thresholds default to lenient values for short
synthetic rows and are configurable.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Perplexity = Callable[[Sequence[str]], list[float | None]]
_WORD = re.compile(r"\S+")
_ALPHA = re.compile(r"[^\W\d_]", re.UNICODE)
_CONTENT = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\d+[.)])\s")
_STOP = frozenset((
    "the", "be", "to", "of", "and", "that", "have", "with", "a", "an", "in", "is",
    "it", "for", "on", "as", "was", "are", "this", "by", "or", "not", "from",
))  # fmt: skip


@dataclass(frozen=True)
class QualityThresholds:
    """Bounds a row must meet; None switches a check off."""

    min_words: int | None = 3
    max_words: int | None = 20_000
    min_mean_word_len: float | None = 2.0
    max_mean_word_len: float | None = 12.0
    max_symbol_ratio: float | None = 0.2
    max_bullet_lines: float | None = 0.95
    max_ellipsis_lines: float | None = 0.4
    min_alpha_words: float | None = 0.5
    max_dup_ngram_share: float | None = 0.5
    max_dup_line_share: float | None = 0.5
    min_compression_ratio: float | None = 0.15
    min_density: float | None = 0.2
    max_perplexity: float | None = 2_000.0


@dataclass(frozen=True)
class QualitySignals:
    words: int
    mean_word_len: float
    symbol_ratio: float
    bullet_lines: float
    ellipsis_lines: float
    alpha_words: float
    dup_ngram_share: float
    dup_line_share: float
    compression_ratio: float
    density: float
    stopword_share: float
    perplexity: float | None = None


def _dup_share(items: Sequence[Any]) -> float:
    """Share of items that repeat an earlier one."""
    if not items:
        return 0.0
    return 1.0 - len(set(items)) / len(items)


def signals(text: str, perplexity: float | None = None) -> QualitySignals:
    """Every heuristic signal of one text (perplexity is computed in batches elsewhere)."""
    words = _WORD.findall(text)
    n = len(words)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    raw = text.encode("utf-8")
    lowered = [w.lower().strip(".,;:!?\"'()") for w in words]
    content = [w for w in lowered if _CONTENT.fullmatch(w) and w not in _STOP]
    trigrams = list(zip(lowered, lowered[1:], lowered[2:], strict=False))
    return QualitySignals(
        words=n,
        mean_word_len=float(np.mean([len(w) for w in words])) if words else 0.0,
        symbol_ratio=(text.count("#") + text.count("...") + text.count("…")) / max(n, 1),
        bullet_lines=sum(bool(_BULLET.match(ln)) for ln in lines) / max(len(lines), 1),
        ellipsis_lines=sum(ln.endswith(("...", "…")) for ln in lines) / max(len(lines), 1),
        alpha_words=sum(bool(_ALPHA.search(w)) for w in words) / max(n, 1),
        dup_ngram_share=_dup_share(trigrams),
        dup_line_share=_dup_share(lines),
        compression_ratio=len(zlib.compress(raw, 9)) / len(raw) if len(raw) >= 200 else 1.0,
        density=len(set(content)) / max(n, 1),
        stopword_share=sum(w in _STOP for w in lowered) / max(n, 1),
        perplexity=perplexity,
    )


# (signal, threshold field, "min" or "max", reason)
_CHECKS = (
    ("words", "min_words", "min", "too_few_words"),
    ("words", "max_words", "max", "too_many_words"),
    ("mean_word_len", "min_mean_word_len", "min", "short_words"),
    ("mean_word_len", "max_mean_word_len", "max", "long_words"),
    ("symbol_ratio", "max_symbol_ratio", "max", "symbols"),
    ("bullet_lines", "max_bullet_lines", "max", "bullet_lines"),
    ("ellipsis_lines", "max_ellipsis_lines", "max", "ellipsis_lines"),
    ("alpha_words", "min_alpha_words", "min", "non_alphabetic"),
    ("dup_ngram_share", "max_dup_ngram_share", "max", "repeated_ngrams"),
    ("dup_line_share", "max_dup_line_share", "max", "repeated_lines"),
    ("compression_ratio", "min_compression_ratio", "min", "compresses_too_well"),
    ("density", "min_density", "min", "low_density"),
    ("perplexity", "max_perplexity", "max", "high_perplexity"),
)


def judge_quality(s: QualitySignals, t: QualityThresholds) -> tuple[bool, float, str | None]:
    """(passed, share of checks passed, reason of the first failure)."""
    failures, counted = [], 0
    for signal, bound_name, side, reason in _CHECKS:
        value, bound = getattr(s, signal), getattr(t, bound_name)
        if value is None or bound is None:
            continue
        counted += 1
        if (side == "min" and value < bound) or (side == "max" and value > bound):
            failures.append(f"{reason}: {signal}={value:.3g} ({side} {bound:g})")
    score = 1.0 - len(failures) / counted if counted else 1.0
    return not failures, round(score, 4), failures[0] if failures else None


def score_texts(
    texts: Sequence[str],
    thresholds: QualityThresholds | None = None,
    perplexity: Perplexity | None = None,
) -> list[dict[str, Any]]:
    """Signals, passed, score and reason for every text, perplexity batched over all of them."""
    thresholds = thresholds or QualityThresholds()
    ppl = perplexity(texts) if perplexity and texts else [None] * len(texts)
    out = []
    for text, value in zip(texts, ppl, strict=True):
        s = signals(text or "", value)
        passed, score, reason = judge_quality(s, thresholds)
        out.append(
            {
                **asdict(s),
                "quality_passed": passed,
                "quality_score": score,
                "quality_reason": reason,
            }
        )
    return out


def reason_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(
        Counter((r["quality_reason"] or "").split(":")[0] for r in rows if r["quality_reason"])
    )


class CausalLMPerplexity:
    """Perplexity under a local causal language model (transformers), first `max_tokens` tokens.

    Loaded on first use; texts are scored in batches with padding masked out.
    """

    def __init__(
        self, model_dir: str, device: str = "cpu", max_tokens: int = 256, batch_size: int = 8
    ) -> None:
        self.model_dir, self.device = model_dir, device
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            if self._tokenizer.pad_token is None:
                self._tokenizer.pad_token = self._tokenizer.eos_token
            self._tokenizer.padding_side = "right"  # masked positions come after the text
            self._model = AutoModelForCausalLM.from_pretrained(self.model_dir).to(self.device)
            self._model.eval()

    def __call__(self, texts: Sequence[str]) -> list[float | None]:
        import torch

        self._load()
        out: list[float | None] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t or " " for t in texts[start : start + self.batch_size]]
            enc = self._tokenizer(
                batch,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
            ).to(self.device)
            with torch.no_grad():
                logits = self._model(**enc).logits[:, :-1]
            target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].float()
            nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2).float(), target, reduction="none"
            )
            counts = mask.sum(dim=1)
            mean = (nll * mask).sum(dim=1) / counts.clamp(min=1)
            for value, count in zip(mean.tolist(), counts.tolist(), strict=True):
                out.append(round(float(np.exp(value)), 3) if count else None)
        return out
