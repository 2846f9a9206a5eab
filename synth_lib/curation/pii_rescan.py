"""PII re-scan of generated text: models regurgitate emails, keys and phone numbers.

Seeds are scrubbed when they are read; generated rows are not, and a model can write PII it
memorised. Every generated (`is_synthetic`) row of a mix-schema frame goes through the seed
scrubber (`synth_lib.seeds.pii`) field by field: `text`, `prompt`, `response`, `chosen`,
`rejected` and each message's `content`.

Scrub, not quarantine, for text: the placeholder (`<EMAIL>`) leaves the row as useful as a
scrubbed seed, and the seeds already train the model on those placeholders; dropping the row
would lose its whole content for one address. Quarantine for executed kinds (verified code
solutions, execution traces): a program with `<IPV4>` in place of an address is no longer
the program that passed its tests, so its verdicts would be false. Quarantined rows leave
the mix and stay in their stage's output; their ids are in the report.

A scrubbed row has a new payload, so it gets a new content-addressed id: the same stage, its
one parent the generated row it was scrubbed from (still in that stage's output, so lineage
and rollback closures walk through it), and a `pii_rescan` verdict whose reason gives the
counts per kind. Human rows and clean generated rows are returned unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synth_lib.provenance.schema import PROVENANCE_COLUMNS, row_id
from synth_lib.seeds.pii import scrub_pii

TEXT_FIELDS = ("text", "prompt", "response", "chosen", "rejected")
VERDICT_NAME = "pii_rescan"
# mix kinds whose payload was executed and verified: scrubbing would void the verdicts
EXECUTED_KINDS = frozenset({"code_solution", "execution_trace"})


@dataclass
class RescanReport:
    """What the re-scan saw: for the asset's metadata."""

    generated_rows: int = 0
    scrubbed_rows: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    quarantined_rows: int = 0
    replaced_ids: dict[str, str] = field(default_factory=dict)  # old id → new id
    quarantined_ids: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "pii_rescan_generated_rows": self.generated_rows,
            "pii_rescan_scrubbed_rows": self.scrubbed_rows,
            "pii_rescan_quarantined_rows": self.quarantined_rows,
            "pii_rescan_quarantined_ids": self.quarantined_ids[:20],
            "pii_rescan_counts": dict(sorted(self.counts.items())),
        }


def _reason(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind}={n}" for kind, n in sorted(counts.items()))


def _scrub_row(row: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    """The row with every text field scrubbed, and the counts per kind.

    `text` is a view of the other fields (prompt + response, a dialogue's messages), so a
    match is counted once: per kind the larger of the view's count and the fields' count
    (`rejected` is outside a pair's view).
    """
    out = dict(row)
    in_view: Counter[str] = Counter()
    in_fields: Counter[str] = Counter()
    for name in TEXT_FIELDS:
        if isinstance(row.get(name), str):
            out[name], found = scrub_pii(row[name])
            (in_view if name == "text" else in_fields).update(found)
    if row.get("messages"):
        messages = []
        for message in row["messages"]:
            if isinstance(message.get("content"), str):
                content, found = scrub_pii(message["content"])
                in_fields.update(found)
                message = {**message, "content": content}
            messages.append(message)
        out["messages"] = messages
    return out, in_view | in_fields


def _payload(row: Mapping[str, Any], payload_columns: list[str]) -> dict[str, Any]:
    return {name: row[name] for name in payload_columns}


def rescan_generated(
    frame: pl.DataFrame, quarantine_kinds: frozenset[str] = EXECUTED_KINDS
) -> tuple[pl.DataFrame, RescanReport]:
    """Scrub PII from the generated rows of a mix-schema `frame`, keeping row order; the new
    ids hash every non-provenance column, as a stage's ids hash its payload. Rows of
    `quarantine_kinds` that hold PII are left out instead (counted, ids reported)."""
    report = RescanReport()
    if frame.is_empty():
        return frame, report
    payload_columns = [c for c in frame.columns if c not in PROVENANCE_COLUMNS]
    rows: list[dict[str, Any] | None] = list(frame.to_dicts())
    for index, row in enumerate(rows):
        if not row["is_synthetic"]:
            continue
        report.generated_rows += 1
        scrubbed, counts = _scrub_row(row)
        if not counts:
            continue
        report.counts += counts
        if row["kind"] in quarantine_kinds:
            report.quarantined_rows += 1
            report.quarantined_ids.append(row["id"])
            rows[index] = None
            continue
        report.scrubbed_rows += 1
        parents = [row["id"]]
        scrubbed["id"] = row_id(row["stage"], parents, _payload(scrubbed, payload_columns))
        scrubbed["parent_ids"] = parents
        scrubbed["verdicts"] = [
            *(row["verdicts"] or []),
            {
                "name": VERDICT_NAME,
                "passed": True,
                "score": float(sum(counts.values())),
                "reason": _reason(counts),
            },
        ]
        report.replaced_ids[row["id"]] = scrubbed["id"]
        rows[index] = scrubbed
    if not report.scrubbed_rows and not report.quarantined_rows:
        return frame, report
    return pl.DataFrame([r for r in rows if r is not None], schema=frame.schema), report
