"""Asset metadata as experiment-tracking values: metrics, params and text artifacts.

Pure (no Dagster, no MLflow), so the mapping is unit-tested on plain dicts. Every key is
prefixed with the asset key, so one tracking run per pipeline run holds every asset's
figures side by side: `rephrasings/row_count`, `rephrasings/tokens_out`, ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synth_lib.provenance.hashing import canonical_json

MAX_KEY_CHARS = 250
MAX_PARAM_CHARS = 6000
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
_DAGSTER_PREFIX = "dagster/"


@dataclass(frozen=True)
class Markdown:
    """A Markdown metadata value: logged as a text artifact, not a param."""

    text: str


@dataclass
class TrackedValues:
    """What one asset materialization logs to its tracking run."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


def tracking_key(*parts: str) -> str:
    """A metric/param key MLflow accepts: allowed characters only, at most 250 of them."""
    return _BAD_KEY_CHARS.sub("_", "/".join(parts))[:MAX_KEY_CHARS]


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else canonical_json(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def _flatten(prefix: tuple[str, ...], value: Any, out: TrackedValues) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        out.params[tracking_key(*prefix)] = str(value).lower()
    elif isinstance(value, int | float):
        if math.isfinite(value):
            out.metrics[tracking_key(*prefix)] = float(value)
    elif isinstance(value, Markdown):
        out.texts[tracking_key(*prefix) + ".md"] = value.text
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _flatten((*prefix, str(name)), item, out)
    elif isinstance(value, str | list | tuple):
        out.params[tracking_key(*prefix)] = _param_text(value)


def tracked_values(asset_key: str, metadata: Mapping[str, Any]) -> TrackedValues:
    """Numbers become metrics, strings/bools/lists params, Markdown text artifacts.

    JSON objects are flattened (`rows_by_style/plain`), so per-category counts are
    metrics too; the `dagster/` prefix of Dagster's own keys is dropped.
    """
    out = TrackedValues()
    for name, value in metadata.items():
        _flatten((asset_key, name.removeprefix(_DAGSTER_PREFIX)), value, out)
    return out


def run_filter(dagster_run_id: str) -> str:
    """Search filter for the tracking run of a Dagster run."""
    return f"tags.dagster_run_id = '{dagster_run_id}'"


def canonical_run(candidates: Iterable[tuple[int, str]]) -> str | None:
    """The run every writer agrees on when parallel steps created more than one: the oldest."""
    ordered = sorted(candidates)
    return ordered[0][1] if ordered else None
