"""Failure accounting: every request that did not yield a usable row is written down.

A stage keeps its good rows and turns each unusable result (an error after retries, a
truncation, a refusal, an answer that failed validation) into a failure row for its
`generation_failures` output and its metadata, so nothing is dropped silently. Failures
are transient (`retryable`: the cache never stores them, so the stage's next run re-sends
exactly those requests) or permanent (truncation, content filter, a request the server
refused with a 4xx: cached, so a re-run does not send them again). Every text in a row
is made encodable, so a failure row can always be written, whatever the server sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from synth_lib.engines.base import GenerationRequest, GenerationResult, ModelIdentity
from synth_lib.engines.validation import encodable, safe_error
from synth_lib.provenance.hashing import canonical_json, sha256_hex

FAILURE_COLUMNS: dict[str, type] = {
    "stage": str,
    "request_id": str,
    "prompt_hash": str,
    "finish_reason": str,
    "error_class": str,
    "error": str,
    "attempts": int,
    "retryable": bool,
    "backend": str,
    "model": str,
    "revision": str,
    "served_model": str,
}


@dataclass(frozen=True)
class FailureRow:
    """One request that produced no usable row, with what is needed to find and retry it."""

    stage: str
    request_id: str
    prompt_hash: str
    finish_reason: str
    error_class: str
    error: str
    attempts: int
    retryable: bool
    backend: str
    model: str
    revision: str
    served_model: str | None = None


def prompt_hash(request: GenerationRequest) -> str:
    """sha256 of the system + user prompt: identifies a prompt without storing its text."""
    return sha256_hex(canonical_json({"system": request.system, "prompt": request.prompt}))[:32]


def error_class(result: GenerationResult) -> str:
    """The class part of `"Class: message"`, or the finish reason when there is no error."""
    if result.error and ":" in result.error:
        return result.error.split(":", 1)[0].strip()
    return result.error or result.finish_reason


def failure_rows(
    stage: str,
    requests: Sequence[GenerationRequest],
    results: Sequence[GenerationResult],
    identity: ModelIdentity,
) -> list[dict[str, Any]]:
    """A failure row (as a dict with FAILURE_COLUMNS) for each result that is not usable."""
    rows = []
    for request, result in zip(requests, results, strict=True):
        if result.ok:
            continue
        row = FailureRow(
            stage=stage,
            request_id=request.request_id,
            prompt_hash=prompt_hash(request),
            finish_reason=result.finish_reason,
            error_class=error_class(result),
            error=result.error or result.finish_reason,
            attempts=result.attempts,
            retryable=result.retryable,
            backend=identity.backend,
            model=identity.model,
            revision=identity.revision,
            served_model=result.served_model,
        )
        rows.append(clean_failure_row(asdict(row)))
    return rows


def clean_failure_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with FAILURE_COLUMNS only, each of its type or None, every text encodable."""
    out: dict[str, Any] = {}
    for name, kind in FAILURE_COLUMNS.items():
        value = row.get(name)
        if kind is str and value is not None:
            value = safe_error(value) if name == "error" else encodable(str(value))
        elif kind is int:
            value = value if isinstance(value, int) and not isinstance(value, bool) else None
        elif kind is bool:
            value = value if isinstance(value, bool) else None
        out[name] = value
    return out


def failure_metadata(rows: Sequence[dict[str, Any]], requests: int) -> dict[str, Any]:
    """Counts for the asset's metadata: how many failed, why, and how many a re-run retries."""
    by_class = Counter(row["error_class"] for row in rows)
    by_reason = Counter(row["finish_reason"] for row in rows)
    return {
        "generation_requests": requests,
        "generation_failures": len(rows),
        "generation_failures_retryable": sum(1 for row in rows if row["retryable"]),
        "generation_failures_permanent": sum(1 for row in rows if not row["retryable"]),
        "generation_failure_rate": round(len(rows) / requests, 4) if requests else 0.0,
        "generation_failures_by_class": dict(sorted(by_class.items())),
        "generation_failures_by_reason": dict(sorted(by_reason.items())),
    }
