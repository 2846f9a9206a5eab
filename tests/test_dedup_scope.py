"""Near-duplicate removal leaves DPO pairs alone: a pair repeats the SFT trace it was built
from (prompt + chosen), by design, and trains another objective."""

import polars as pl

from synth_lib.curation.dedup import DedupConfig
from synth_lib.curation.steps import near_duplicates

VERDICT = pl.Struct({"name": pl.Utf8, "passed": pl.Boolean, "score": pl.Float64, "reason": pl.Utf8})
PROMPT = "What is the greatest common divisor of 84 and 36? Think step by step."
ANSWER = "84 = 2 * 36 + 12 and 36 = 3 * 12, so the greatest common divisor is 12. Answer: 12"


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        [{**row, "is_synthetic": True, "verdicts": []} for row in rows],
        schema={
            "id": pl.Utf8,
            "_text": pl.Utf8,
            "chosen": pl.Utf8,
            "is_synthetic": pl.Boolean,
            "verdicts": pl.List(VERDICT),
        },
    )


def test_a_pair_is_not_the_duplicate_of_its_trace_but_traces_are_of_each_other():
    text = f"{PROMPT}\n\n{ANSWER}"
    frame = _frame(
        [
            {"id": "trace-a", "_text": text, "chosen": None},
            {"id": "trace-b", "_text": text, "chosen": None},
            {"id": "pair", "_text": text, "chosen": ANSWER},
        ]
    )
    kept, rejected, result = near_duplicates(frame, DedupConfig())
    assert sorted(kept["id"]) == ["pair", "trace-a"]
    assert rejected["id"].to_list() == ["trace-b"]
    assert "duplicate of trace-a" in rejected["verdicts"][0][-1]["reason"]
    assert result.stats()["exact_duplicates"] == 1
    pair_verdict = kept.filter(pl.col("id") == "pair")["verdicts"][0][-1]
    assert (pair_verdict["name"], pair_verdict["passed"]) == ("dedup", True)
