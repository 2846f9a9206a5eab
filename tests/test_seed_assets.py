"""Seed assets end to end: malformed files quarantine exactly their bad rows, good rows go on."""

import json

import dagster as dg
import polars as pl

from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources

SEED_KEYS = ["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"]


def test_malformed_seed_files_are_quarantined_row_by_row(synth_home, tmp_path):
    math = tmp_path / "math.jsonl"
    good = [json.dumps({"question": f"q{i}?", "answer": f"{i}+0={i}\n#### {i}"}) for i in range(4)]
    math.write_bytes(
        b"\xef\xbb\xbf"
        + "\n".join(
            [
                good[0],
                "{oops",
                good[1],
                json.dumps({"question": 1, "answer": "#### 2"}),
                good[2],
                good[3],
                '{"question": "cut',
            ]
        ).encode()
    )
    text = tmp_path / "extra.parquet"
    pl.DataFrame(
        {"text": ["An extra human passage about loops.", None, "Another passage."]}
    ).write_parquet(text)
    result = dg.materialize(
        all_assets,
        selection=SEED_KEYS,
        resources=local_resources(synth_home),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={
            "ops": {
                "seeds": {
                    "config": {
                        "gsm8k_path": str(math),
                        "extra_text_paths": [str(text)],
                        "extra_text_license": "CC0",
                    }
                }
            }
        },
    )
    assert result.success
    data = synth_home / "data"
    quarantine = pl.read_parquet(data / "seed_quarantine.parquet").sort("stage", "line")
    assert quarantine.select("stage", "line").rows() == [
        ("math_seeds", 2),
        ("math_seeds", 4),
        ("math_seeds", 7),
        ("text_seeds", 2),
    ]
    assert quarantine["reason"][2].startswith("truncated last line")
    assert pl.read_parquet(data / "math_seeds.parquet")["gold"].sort().to_list() == [
        "0",
        "1",
        "2",
        "3",
    ]
    texts = pl.read_parquet(data / "text_seeds.parquet")
    extra = texts.filter(pl.col("source").struct.field("license") == "CC0")
    assert extra["text"].sort().to_list() == [
        "An extra human passage about loops.",
        "Another passage.",
    ]


def test_missing_math_file_skips_with_a_message(synth_home, tmp_path):
    result = dg.materialize(
        all_assets,
        selection=SEED_KEYS,
        resources=local_resources(synth_home),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"seeds": {"config": {"gsm8k_path": str(tmp_path / "none.jsonl")}}}},
    )
    assert result.success
    events = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert events["math_seeds"]["dagster/row_count"].value == 0
    assert "does not exist" in events["math_seeds"]["status"].value
    assert events["text_seeds"]["dagster/row_count"].value > 300
