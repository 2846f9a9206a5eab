"""Token economics: what a stage's generation cost, and what each accepted row cost.

Every generating asset adds `economics_metadata(...)` to its materialization, so the UI
shows tokens, throughput, pass rate and cost per accepted row side by side. APIs are
priced per million tokens, local engines per GPU-hour; cache hits cost nothing this run.
The default table is a placeholder: set real prices with `PriceTable.from_json`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth_lib.engines.base import ModelIdentity
from synth_lib.engines.cache import GenerationStats


@dataclass(frozen=True)
class Price:
    """USD per million input/output tokens (APIs) and per GPU-hour (local engines)."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    gpu_hour: float = 0.0


DEFAULT_PRICES: dict[str, Price] = {
    "vllm:*": Price(gpu_hour=2.5),
    "transformers:*": Price(),
    "openai:*": Price(),
    "*": Price(),
}


@dataclass(frozen=True)
class PriceTable:
    """`backend:model` glob patterns -> Price; the first pattern that matches wins."""

    prices: dict[str, Price] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @classmethod
    def from_json(cls, source: str | Path) -> PriceTable:
        """From a JSON object (text or file): {"openai:gpt-4o-mini*": {"input_per_mtok": 0.15}}."""
        path = Path(source) if not str(source).lstrip().startswith("{") else None
        raw = json.loads(path.read_text() if path else str(source))
        return cls({pattern: Price(**fields) for pattern, fields in raw.items()})

    def lookup(self, identity: ModelIdentity) -> tuple[str, Price]:
        name = f"{identity.backend}:{identity.model}"
        for pattern, price in self.prices.items():
            if fnmatch.fnmatchcase(name, pattern):
                return pattern, price
        return "unpriced", Price()


def generation_cost(
    price: Price, prompt_tokens: int, completion_tokens: int, engine_seconds: float, gpus: int = 1
) -> float:
    """USD for the tokens and GPU time spent."""
    tokens = price.input_per_mtok * prompt_tokens + price.output_per_mtok * completion_tokens
    return tokens / 1e6 + price.gpu_hour * gpus * engine_seconds / 3600.0


def economics_metadata(
    stats: GenerationStats,
    accepted_rows: int,
    identity: ModelIdentity,
    prices: PriceTable | None = None,
    gpus: int = 1,
) -> dict[str, Any]:
    """The token-economics block of a generating asset's metadata."""
    pattern, price = (prices or PriceTable()).lookup(identity)
    secs = stats.engine_seconds
    cost = generation_cost(
        price, stats.prompt_tokens, stats.completion_tokens, stats.engine_seconds, gpus
    )
    return {
        "requests": stats.requests,
        "cache_hits": stats.cache_hits,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "engine_seconds": round(secs, 3),
        "gpu_hours": round(gpus * secs / 3600.0, 6) if price.gpu_hour else 0.0,
        "completion_tokens_per_s": round(stats.completion_tokens / secs, 1) if secs else 0.0,
        "total_tokens_per_s": (
            round((stats.prompt_tokens + stats.completion_tokens) / secs, 1) if secs else 0.0
        ),
        "accepted_rows": accepted_rows,
        "pass_rate": round(accepted_rows / stats.requests, 4) if stats.requests else 0.0,
        "cost_usd": round(cost, 6),
        "cost_per_accepted_row_usd": round(cost / accepted_rows, 8) if accepted_rows else None,
        "price_basis": f"{pattern} in={price.input_per_mtok}/Mtok "
        f"out={price.output_per_mtok}/Mtok gpu={price.gpu_hour}/h",
    }
