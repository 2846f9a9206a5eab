"""From checked CoT samples to the `cot_traces` rows: judge scores, best-of-N, weights.

Kept traces are scored by the constitution judge, only those at or above their
problem's percentile survive (rejection sampling), and survivors from rare corners of
the seed distribution are up-weighted. Every step leaves a verdict on the row, and every
sample stays in the output with `accepted` and `drop_reason`, so the asset is an audit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.provenance.schema import Verdict, add_verdicts
from synth_lib.reasoning.cot import CotOutcome
from synth_lib.reasoning.judge import Judge
from synth_lib.reasoning.selection import Embedder, GroupThreshold, percentile_filter, rarity
from synth_lib.reasoning.tasks import Problem


@dataclass
class Curated:
    rows: list[dict[str, Any]] = field(default_factory=list)
    thresholds: list[GroupThreshold] = field(default_factory=list)
    drops: Counter[str] = field(default_factory=Counter)
    weighted: Counter[str] = field(default_factory=Counter)
    unscored: int = 0


def curate(
    outcome: CotOutcome,
    problems: Sequence[Problem],
    seed_distribution: Sequence[tuple[str, str, str]],
    *,
    judge: Judge | None,
    percentile: float = 90.0,
    rare_weight: float = 5.0,
    low_density_quantile: float = 0.1,
    rare_task_share: float = 0.05,
    embed: Embedder | None = None,
) -> Curated:
    """`seed_distribution` is (id, text, task_type) for every seed problem, used or not."""
    result = Curated(drops=Counter(outcome.drops))
    kept = [dict(r) for r in outcome.kept]
    if judge is not None and kept:
        scores = judge.score([(r["id"], r["prompt"], r["response"]) for r in kept])
        for row, score in zip(kept, scores, strict=True):
            row["score"] = score
            result.unscored += score is None
    survivors, below, result.thresholds = percentile_filter(
        kept, group_key="problem_id", percentile=percentile
    )
    threshold_of = {t.group: t.threshold for t in result.thresholds}
    ids = [s[0] for s in seed_distribution]
    index_of = {pid: i for i, pid in enumerate(ids)}
    queries = [index_of[p.id] for p in problems if p.id in index_of]
    reasons = rarity(
        [s[1] for s in seed_distribution],
        [s[2] for s in seed_distribution],
        queries,
        low_density_quantile=low_density_quantile,
        rare_task_share=rare_task_share,
        embed=embed,
    )
    rare_by_problem = {ids[q]: reason for q, reason in zip(queries, reasons, strict=True)}
    for row in survivors:
        verdicts = [_rs_verdict(row, threshold_of[row["problem_id"]], percentile, True)]
        reason = rare_by_problem.get(row["problem_id"])
        if reason:
            verdicts.append(Verdict("inverse_weight", True, rare_weight, reason))
            result.weighted[reason] += 1
        out = add_verdicts(row, verdicts)
        out.update(weight=rare_weight if reason else 1.0, accepted=True, drop_reason=None)
        result.rows.append(out)
    for row in below:
        verdict = _rs_verdict(row, threshold_of[row["problem_id"]], percentile, False)
        out = add_verdicts(row, [verdict])
        out.update(accepted=False, drop_reason="below_group_percentile")
        result.rows.append(out)
        result.drops["below_group_percentile"] += 1
    result.rows += [{**r, "accepted": False} for r in outcome.failed]
    return result


def _rs_verdict(
    row: Mapping[str, Any], threshold: float | None, percentile: float, passed: bool
) -> Verdict:
    where = "no scores in group" if threshold is None else f"threshold={threshold:.3f}"
    return Verdict("rejection_sampling", passed, row.get("score"), f"p{percentile:g} {where}")
