"""Seed assets end to end: malformed files quarantine exactly their bad rows, good rows go on."""

import json

import dagster as dg
import polars as pl

from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from synth_lib.seeds import sharding
from synth_lib.seeds.sharding import file_shard_keys
from tests.shards import GSM8K, materialize_shard, shard_file

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
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    pl.DataFrame(
        {
            "text": ["An extra human passage about loops.", None, "Another passage."],
            "license": ["CC0", "CC0", "CC0"],
        }
    ).write_parquet(seed_dir / "extra.parquet")
    instance = dg.DagsterInstance.ephemeral()
    data = synth_home / "data"
    math_shard = GSM8K.replace("n64", "n8")
    (text_shard,) = file_shard_keys("extra.parquet", 3, 64)
    for shard in (math_shard, text_shard):
        result = materialize_shard(
            all_assets,
            shard,
            instance,
            selection=SEED_KEYS,
            resources=local_resources(synth_home),
            run_config={
                "ops": {"seeds": {"config": {"gsm8k_path": str(math), "seed_dir": str(seed_dir)}}}
            },
        )
        assert result.success
    quarantine = pl.concat(
        [pl.read_parquet(shard_file(data, "seed_quarantine", s)) for s in (math_shard, text_shard)]
    ).sort("stage", "line")
    assert quarantine.select("stage", "line").rows() == [
        ("math_seeds", 2),
        ("math_seeds", 4),
        ("math_seeds", 7),
        ("seed_file", 2),
    ]
    assert quarantine["reason"][2].startswith("truncated last line")
    assert "must be a string" in quarantine["reason"][3]
    math_rows = pl.read_parquet(shard_file(data, "math_seeds", math_shard))
    assert math_rows["gold"].sort().to_list() == ["0", "1", "2", "3"]
    texts = pl.read_parquet(shard_file(data, "text_seeds", text_shard))
    assert texts["text"].sort().to_list() == [
        "An extra human passage about loops.",
        "Another passage.",
    ]
    assert set(texts["source"].struct.field("license")) == {"CC0"}
    assert pl.read_parquet(shard_file(data, "code_seeds", text_shard)).height == 0


def test_a_shard_holds_its_slice_of_a_source(synth_home, tmp_path):
    math = tmp_path / "math.jsonl"
    math.write_text(
        "".join(json.dumps({"question": f"q{i}?", "answer": f"#### {i}"}) + "\n" for i in range(10))
    )
    instance = dg.DagsterInstance.ephemeral()
    golds = []
    for shard in sharding.shard_keys(sharding.GSM8K, 10, 4):
        result = materialize_shard(
            all_assets,
            shard,
            instance,
            selection=SEED_KEYS,
            resources=local_resources(synth_home),
            run_config={"ops": {"seeds": {"config": {"gsm8k_path": str(math)}}}},
        )
        assert result.success
        frame = pl.read_parquet(shard_file(synth_home / "data", "math_seeds", shard))
        golds.append(frame.sort("question")["gold"].to_list())
    assert golds == [["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"]]


def test_missing_math_file_skips_with_a_message(synth_home, tmp_path):
    result = materialize_shard(
        all_assets,
        GSM8K,
        selection=SEED_KEYS,
        resources=local_resources(synth_home),
        run_config={"ops": {"seeds": {"config": {"gsm8k_path": str(tmp_path / "none.jsonl")}}}},
    )
    assert result.success
    events = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert events["math_seeds"]["dagster/row_count"].value == 0
    assert "does not exist" in events["math_seeds"]["status"].value
    assert events["text_seeds"]["dagster/row_count"].value == 0
