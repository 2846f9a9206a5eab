"""Cleanup every seed source shares: normalise, scrub PII, drop exact duplicates, add provenance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.seeds.pii import scrub_pii
from synth_lib.seeds.readers import Reject
from synth_lib.seeds.textclean import normalize_text


@dataclass(frozen=True)
class RawSeed:
    """A seed before cleanup: its payload, where it came from, and which fields are prose."""

    payload: dict[str, Any]
    source: Source
    text_fields: tuple[str, ...]


@dataclass
class SeedBatch:
    """Clean seed rows plus what cleanup did, for the asset's metadata."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    pii_counts: Counter[str] = field(default_factory=Counter)
    exact_duplicates: int = 0
    empty_after_cleanup: int = 0
    read: int = 0

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_read": self.read,
            "rows_kept": len(self.rows),
            "rows_quarantined": len(self.rejects),
            "exact_duplicates_dropped": self.exact_duplicates,
            "empty_after_cleanup": self.empty_after_cleanup,
            "pii_replacements": dict(self.pii_counts),
        }


def clean_seeds(
    raw: Iterable[RawSeed],
    *,
    stage: str,
    ctx: RowContext,
    normalizer: Callable[[str], str] = normalize_text,
    rejects: Iterable[Reject] = (),
) -> SeedBatch:
    """Clean each seed's text fields, drop empties and exact duplicates, and build rows."""
    batch = SeedBatch(rejects=list(rejects))
    seen: set[str] = set()
    for seed in raw:
        batch.read += 1
        payload: dict[str, Any] = dict(seed.payload)
        for name in seed.text_fields:
            cleaned, counts = scrub_pii(normalizer(payload[name]))
            payload[name] = cleaned
            batch.pii_counts.update(counts)
        if not all(payload[name] for name in seed.text_fields):
            batch.empty_after_cleanup += 1
            continue
        digest = sha256_hex("\x1f".join(payload[name] for name in seed.text_fields))
        if digest in seen:
            batch.exact_duplicates += 1
            continue
        seen.add(digest)
        batch.rows.append(make_row(stage=stage, payload=payload, ctx=ctx, source=seed.source))
    return batch


def reject_rows(rejects: Iterable[Reject], stage: str) -> list[Mapping[str, Any]]:
    """Quarantined rows as plain records for the rejected-rows output."""
    return [
        {"stage": stage, "file": r.file, "line": r.line, "reason": r.reason, "raw": r.raw}
        for r in rejects
    ]
