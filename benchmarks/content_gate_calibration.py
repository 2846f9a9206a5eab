"""Calibrate the rephrasing content gate on a run's real outputs.

Every complete rewrite in `rephrasings` is scored (key-term support and coverage) against
its own passage and against every *other* passage of its shard: the second is what an
answer unrelated to its passage looks like. For a grid of thresholds this prints the share
of rewrites that pass against their own passage and the share of mismatched pairs that
would pass (false accepts), then the gate's rejections by reason in the run itself.

    .venv/bin/python benchmarks/content_gate_calibration.py --data .synth/data
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth_lib.text.content_gate import term_overlap


def _passes(pairs: list[tuple[float, float]], support: float, coverage: float) -> float:
    return sum(s >= support and c >= coverage for s, c in pairs) / len(pairs) if pairs else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=".synth/data", help="the run's data folder")
    args = parser.parse_args()
    data = Path(args.data)
    rewrites = pl.concat(
        [pl.read_parquet(p) for p in sorted((data / "rephrasings").glob("*.parquet"))]
    )
    seeds = pl.concat([pl.read_parquet(p) for p in sorted((data / "text_seeds").glob("*.parquet"))])
    passages = dict(zip(seeds["id"].to_list(), seeds["text"].to_list(), strict=True))
    own, other = [], []
    reasons: Counter[str] = Counter()
    for row in rewrites.iter_rows(named=True):
        parent = row["parent_ids"][0]
        o = term_overlap(row["text"], passages[parent])
        own.append((o.support, o.coverage))
        for seed_id, text in passages.items():
            if seed_id != parent:
                m = term_overlap(row["text"], text)
                other.append((m.support, m.coverage))
        failed = [v for v in row["verdicts"] if not v["passed"]]
        if failed and failed[0]["name"] in ("content_overlap", "canned_answer"):
            reasons[failed[0]["reason"].split(":")[0]] += 1
    print(f"{len(own)} complete rewrites, {len(other)} mismatched pairs")
    print("min_support min_coverage  own_passes  mismatched_passes")
    for support in (0.2, 0.25, 0.3, 0.35, 0.4):
        for coverage in (0.1, 0.15, 0.2):
            print(
                f"{support:11.2f} {coverage:12.2f}  {_passes(own, support, coverage):10.2f}"
                f"  {_passes(other, support, coverage):17.3f}"
            )
    print("content gate rejections in this run:", dict(reasons))


if __name__ == "__main__":
    main()
