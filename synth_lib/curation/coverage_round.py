"""The coverage round's rows, prepared to be curated beside the shards of the mix.

`stratified_instructions` is planned over every shard at once (its budget comes from
`coverage`), so it belongs to no seed shard and cannot enter a shard of `training_mix`.
`decontaminated_mix` curates it as one more shard, `COVERAGE_ROUND_SHARD`, after the gates
a mix shard applies to its generated rows: accepted rows only, the PII re-scan, and the
quality heuristics (no perplexity: curation holds no model).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from synth_lib.curation.pii_rescan import rescan_generated
from synth_lib.curation.quality import QualityThresholds, score_texts
from synth_lib.mix.shards import accepted_only, to_mix_schema

COVERAGE_ROUND_SHARD = "coverage-round"
KIND = "instruction"


@dataclass
class RoundReport:
    """What happened to the round's rows before curation proper."""

    rows: int = 0
    accepted: int = 0
    pii_scrubbed: int = 0
    failed_quality: Counter[str] = field(default_factory=Counter)
    entering: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "pii_scrubbed": self.pii_scrubbed,
            "failed_quality": dict(self.failed_quality),
            "entering_curation": self.entering,
        }


def coverage_round_rows(
    frame: pl.DataFrame, thresholds: QualityThresholds | None = None
) -> tuple[pl.DataFrame, RoundReport]:
    """The round's accepted rows in the mix schema, PII scrubbed, failing quality left out."""
    report = RoundReport(rows=frame.height)
    if not frame.width:
        return frame, report
    rows = to_mix_schema(accepted_only(frame), KIND)
    report.accepted = rows.height
    rows, pii = rescan_generated(rows)
    report.pii_scrubbed = pii.scrubbed_rows
    verdicts = score_texts(rows.get_column("text").to_list(), thresholds)
    report.failed_quality.update(
        (v["quality_reason"] or "").split(":")[0] for v in verdicts if not v["quality_passed"]
    )
    kept = rows.filter(pl.Series([v["quality_passed"] for v in verdicts], dtype=pl.Boolean))
    report.entering = kept.height
    return kept, report
