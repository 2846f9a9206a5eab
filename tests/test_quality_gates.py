"""Great Expectations gates: a clean mix passes; each broken rule is named in the summary."""

from datetime import UTC, datetime

import polars as pl
import pytest

from synth_lib.curation.quality_gates import run_gates


def _mix(n: int = 50) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "text": [f"row {i}" for i in range(n)],
            "id": [f"id{i}" for i in range(n)],
            "stage": ["text_seeds", "rephrasings"] * (n // 2),
            "is_synthetic": [False, True] * (n // 2),
            "run_id": ["run-1"] * n,
            "created_at": [datetime(2026, 1, 1, tzinfo=UTC)] * n,
            "root_seed_ids": [[f"id{i - i % 2}"] for i in range(n)],
            "weight": [1.0] * n,
        }
    )


def test_clean_mix_passes_every_expectation():
    ok, summary = run_gates(_mix())
    assert ok and summary["failed"] == [] and summary["evaluated"] >= 10


@pytest.mark.parametrize(
    ("breakage", "expectation", "column"),
    [
        (pl.col("id").replace({"id3": "id0"}), "expect_column_values_to_be_unique", "id"),
        (
            pl.col("stage").replace({"rephrasings": "mystery"}),
            "expect_column_values_to_be_in_set",
            "stage",
        ),
        (
            pl.when(pl.col("id") == "id4").then(None).otherwise(pl.col("run_id")).alias("run_id"),
            "expect_column_values_to_not_be_null",
            "run_id",
        ),
        (
            pl.when(pl.col("id") == "id5").then(0.0).otherwise(pl.col("weight")).alias("weight"),
            "expect_column_values_to_be_between",
            "weight",
        ),
        (
            pl.when(pl.col("id") == "id6")
            .then(pl.lit([], pl.List(pl.Utf8)))
            .otherwise(pl.col("root_seed_ids"))
            .alias("root_seed_ids"),
            "expect_column_values_to_be_between",
            "root_seed_ids",
        ),
    ],
)
def test_each_broken_rule_fails_by_name(breakage, expectation, column):
    ok, summary = run_gates(_mix().with_columns(breakage))
    assert not ok
    failed = {(f["expectation"], f.get("column")) for f in summary["failed"]}
    assert failed == {(expectation, column)}


def test_missing_provenance_column_fails_the_schema_expectation():
    ok, summary = run_gates(_mix().drop("created_at"))
    assert not ok
    schema = [
        f for f in summary["failed"] if f["expectation"] == "expect_table_columns_to_match_set"
    ]
    assert schema and schema[0]["details"]["mismatched"]["missing"] == ["created_at"]
