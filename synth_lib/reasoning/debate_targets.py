"""Which unverifiable samples are debated: a stable share of accepted rephrasings and of
judged preference pairs, each turned into a claim with the context a debater needs."""

from __future__ import annotations

import polars as pl

from synth_lib.reasoning.debate import DebateItem
from synth_lib.reasoning.seeding import in_share

REWRITE_CLAIM = "The rewrite preserves the source's meaning and adds nothing it does not say."
PAIR_CLAIM = "Response 1 is more correct, faithful and clearly reasoned than Response 2."


def debate_targets(
    rephrasings: pl.DataFrame,
    pairs: pl.DataFrame,
    seeds: pl.DataFrame,
    *,
    share: float,
    max_items: int,
) -> list[DebateItem]:
    """Debate items for the chosen rephrasings, then the chosen judged pairs (`max_items`
    per source stage, 0: no cap); membership is by id hash, so it is stable across runs."""
    cap = max_items or None
    source_text = dict(zip(seeds["id"], seeds["text"], strict=True))
    items = []
    for row in rephrasings.filter(pl.col("accepted")).sort("id").iter_rows(named=True):
        if in_share(row["id"], share, "debate"):
            passage = source_text.get(row["parent_ids"][0], "")
            context = (
                f"Source passage:\n{passage}\n\nRewrite ({row['style']} style):\n{row['text']}"
            )
            items.append(DebateItem(REWRITE_CLAIM, context, row))
    items = items[:cap]
    judged_rows = pairs.filter(pl.col("pair_source").str.starts_with("judged")).sort("id")
    pair_items = []
    for row in judged_rows.iter_rows(named=True):
        if in_share(row["id"], share, "debate"):
            context = (
                f"Prompt:\n{row['prompt']}\n\nResponse 1:\n{row['chosen']}\n\n"
                f"Response 2:\n{row['rejected']}"
            )
            pair_items.append(DebateItem(PAIR_CLAIM, context, row))
    return items + pair_items[:cap]
