"""`decontaminated_mix` in Dagster: planted benchmark rows go, and the blocking checks hold."""

import json
from pathlib import Path
from pydoc_data.topics import topics

import dagster as dg
import polars as pl
import pytest

from resources.parquet_io import PolarsParquetIOManager
from resources.storage import SynthStorage
from synth_assets import curation
from synth_assets.partitions import seed_shards
from synth_lib.curation.decontam import humaneval_items
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.schema import Generator, RowContext, Source, make_row, rows_to_frame
from tests.shards import REF, materialize_shard

CHECKS = [
    curation.decontaminated_mix_no_benchmark_leak,
    curation.decontaminated_mix_quality_gates,
    curation.decontaminated_mix_drift_soft,
    curation.decontaminated_mix_drift_hard,
]
# the coverage round, never materialized in these tests: an optional input of the mix
NO_ROUND = dg.AssetSpec("stratified_instructions")


@pytest.fixture(scope="module")
def gsm8k_questions(gsm8k_test: Path) -> list[str]:
    return [json.loads(line)["question"] for line in gsm8k_test.open()][:4]


def _mix(gsm8k_questions: list[str]) -> pl.DataFrame:
    ctx = RowContext(run_id="test-run")
    gen = Generator("scripted", "m", "r", "rephrase_easy", "h", "{}", 0)
    names = sorted(topics)[:12]
    seeds = [
        make_row(
            stage="text_seeds",
            payload={"text": " ".join(topics[n].split()[:70])},
            ctx=ctx,
            source=Source("python-language-reference", n, "PSF-2.0"),
        )
        for n in names
    ]

    def synthetic(text: str, parent: dict) -> dict:
        return make_row(
            stage="rephrasings", payload={"text": text}, ctx=ctx, parents=[parent], generator=gen
        )

    rows = [*seeds]
    rows += [
        synthetic(" ".join(topics[n].split()[70:140]), s) for n, s in zip(names, seeds, strict=True)
    ]
    rows += [synthetic("Word problem: " + q, seeds[0]) for q in gsm8k_questions]
    rows += [synthetic(p.text, seeds[1]) for p in humaneval_items()[:3]]
    rows.append(
        make_row(
            stage="execution_traces",
            payload={"text": "What does `math.sqrt(16.0)` return?\n\n4.0"},
            ctx=ctx,
            parents=[seeds[2]],
            generator=gen,
        )
    )
    return to_mix_schema(rows_to_frame(rows, {"text": pl.Utf8}), "text")


def _stub(
    name: str, frame: pl.DataFrame, metadata: dict | None = None, partitions_def=None
) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=partitions_def)
    def stub() -> dg.MaterializeResult:
        return dg.MaterializeResult(value=frame, metadata=metadata or {})

    return stub


def _mix_shards(mix: pl.DataFrame, instance: dg.DagsterInstance, tmp_path: Path):
    """The mix as two materialized shards of training_mix; curation reads every shard."""
    half = mix.height // 2
    for shard, part in ((REF, mix.head(half)), (REF.replace("00000", "00001"), mix.tail(-half))):
        stub = _stub("training_mix", part, partitions_def=seed_shards)
        assert materialize_shard([stub], shard, instance, resources=_resources(tmp_path)).success
    return stub.to_source_assets()[0]


def _resources(tmp_path: Path) -> dict:
    return {
        "storage": SynthStorage(home=str(tmp_path)),
        "io_manager": PolarsParquetIOManager(base_dir=str(tmp_path / "data")),
    }


def test_planted_items_are_removed_and_every_check_passes(tmp_path, gsm8k_test, gsm8k_questions):
    mix = _mix(gsm8k_questions)
    config = {"benchmark_paths": [str(gsm8k_test)], "humaneval": True}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [_mix_shards(mix, instance, tmp_path), NO_ROUND, curation.decontaminated_mix, *CHECKS],
        resources=_resources(tmp_path),
        run_config={"ops": {"decontaminated_mix": {"config": config}}},
        instance=instance,
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys([c.check_key.name for c in CHECKS], True)
    out = pl.read_parquet(tmp_path / "data" / "decontaminated_mix.parquet")
    planted = {"Word problem: " + q for q in gsm8k_questions} | {
        p.text for p in humaneval_items()[:3]
    }
    assert not planted & set(out.get_column("text").to_list())
    assert out.filter(~pl.col("is_synthetic")).height == 12  # every human seed survives
    assert out.filter(pl.col("stage") == "execution_traces").height == 1  # not anchored
    rejected = pl.read_parquet(tmp_path / "data" / "curation_rejects" / "rejected.parquet")
    leak_reasons = (
        rejected.select(pl.col("verdicts").list.last())
        .unnest("verdicts")
        .filter(pl.col("name") == "decontam")
        .get_column("reason")
        .to_list()
    )
    assert {r.split(":")[0] for r in leak_reasons} == {
        *(f"gsm8k-test/{i}" for i in range(4)),
        *(f"humaneval/{p.item_id}" for p in humaneval_items()[:3]),
    }
    metadata = result.asset_materializations_for_node("decontaminated_mix")[0].metadata
    assert metadata["flagged_by_benchmark"].value == {"gsm8k-test": 4, "humaneval": 3}
    assert metadata["drift_metrics"].value["human_rows"] == 12
    assert "data:image/png;base64," in metadata["drift_trend"].value
    kept_verdicts = out.get_column("verdicts").list.eval(pl.element().struct.field("name"))
    assert all({"decontam", "dedup"} <= set(v) for v in kept_verdicts.to_list())


def test_blocking_leak_check_fails_and_stops_downstream_when_items_remain(
    tmp_path, gsm8k_test, gsm8k_questions
):
    leaky = _stub(
        "decontaminated_mix",
        _mix(gsm8k_questions),
        {"check_spec": dg.MetadataValue.json({"benchmark_paths": [str(gsm8k_test)]})},
    )

    @dg.asset(deps=["decontaminated_mix"])
    def trainer() -> None:
        """Materializes whenever it runs: only the blocking check can keep it out."""

    result = dg.materialize(
        [leaky, trainer, curation.decontaminated_mix_no_benchmark_leak],
        resources=_resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["flagged"].value == 7
    assert result.asset_materializations_for_node("trainer") == []


def test_drift_checks_judge_recorded_metrics_with_two_severities(tmp_path):
    frame = _mix([]).head(3)
    spec = {
        "soft_bounds": {"kl_to_human": [None, 1.0]},
        "hard_bounds": {"kl_to_human": [None, 2.0]},
    }
    stub = _stub(
        "decontaminated_mix",
        frame,
        {
            "drift_metrics": dg.MetadataValue.json({"synthetic_rows": 3, "kl_to_human": 1.5}),
            "check_spec": dg.MetadataValue.json(spec),
        },
    )
    result = dg.materialize(
        [stub, curation.decontaminated_mix_drift_soft, curation.decontaminated_mix_drift_hard],
        resources=_resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    by_name = {e.check_name: e for e in result.get_asset_check_evaluations()}
    soft, hard = by_name["decontaminated_mix_drift_soft"], by_name["decontaminated_mix_drift_hard"]
    assert not soft.passed and soft.severity == dg.AssetCheckSeverity.WARN
    assert "kl_to_human=1.5 above soft maximum 1.0" in soft.description
    assert hard.passed and hard.severity == dg.AssetCheckSeverity.ERROR


def _swap_word_pairs(text: str) -> str:
    """Same words, new order: close to its source in meaning, not in shingles."""
    words = text.split()
    for i in range(0, len(words) - 1, 2):
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _curation_mix() -> tuple[pl.DataFrame, dict[str, str]]:
    """Human seeds and one rephrasing per removal reason; returns the frame and those ids."""
    ctx = RowContext(run_id="test-run")
    gen = Generator("scripted", "m", "r", "rephrase_easy", "h", "{}", 0)
    seeds = [
        make_row(
            stage="text_seeds",
            payload={"text": " ".join(topics[n].split()[:70])},
            ctx=ctx,
            source=Source("python-language-reference", n, "PSF-2.0"),
        )
        for n in sorted(topics)[:12]
    ]

    def rephrasing(text: str, parent: dict) -> dict:
        return make_row(
            stage="rephrasings", payload={"text": text}, ctx=ctx, parents=[parent], generator=gen
        )

    words = seeds[3]["text"].split()
    planted = {
        "exact": rephrasing(seeds[2]["text"].upper(), seeds[2]),
        "near": rephrasing(" ".join(words[35:] + words[:35]), seeds[3]),
        "redundant": rephrasing(_swap_word_pairs(seeds[1]["text"]), seeds[1]),
        "drift": rephrasing(
            "Preheat the oven to 180 degrees, whisk two eggs with sugar and fold in the flour "
            "before baking the sponge for thirty minutes.",
            seeds[0],
        ),
    }
    frame = rows_to_frame([*seeds, *planted.values()], {"text": pl.Utf8})
    ids = {name: row["id"] for name, row in planted.items()}
    ids |= {"seed1": seeds[1]["id"], "seed2": seeds[2]["id"], "seed3": seeds[3]["id"]}
    return to_mix_schema(frame, "text"), ids


def test_dedup_and_anchor_window_drops_carry_their_reasons_and_counts(tmp_path):
    mix, ids = _curation_mix()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [_mix_shards(mix, instance, tmp_path), NO_ROUND, curation.decontaminated_mix],
        resources=_resources(tmp_path),
        instance=instance,
    )
    assert result.success
    metadata = result.asset_materializations_for_node("decontaminated_mix")[0].metadata
    assert metadata["coverage_round"].value["rows"] == 0
    dedup = metadata["dedup"].value
    assert (dedup["exact_duplicates"], dedup["near_duplicates"]) == (1, 1)
    assert "| drift | 1 |" in metadata["anchor_drop_reasons"].value
    assert "| redundant | 1 |" in metadata["anchor_drop_reasons"].value
    assert metadata["rejected_rows"].value == 4
    out = pl.read_parquet(tmp_path / "data" / "decontaminated_mix.parquet")
    assert out.filter(pl.col("is_synthetic")).height == 0
    assert out.height == 12  # every human seed stays
    rejected = pl.read_parquet(tmp_path / "data" / "curation_rejects" / "rejected.parquet")
    last = rejected.select("id", pl.col("verdicts").list.last().alias("v")).unnest("v")
    reasons = {row["id"]: (row["name"], row["reason"]) for row in last.iter_rows(named=True)}
    assert reasons[ids["exact"]][0] == reasons[ids["near"]][0] == "dedup"
    assert reasons[ids["exact"]][1].startswith(f"exact duplicate of {ids['seed2']}")
    assert reasons[ids["near"]][1].startswith(f"near duplicate of {ids['seed3']}")
    name, reason = reasons[ids["redundant"]]
    assert name == "anchor_window" and reason.startswith("redundant: best anchor cosine")
    assert reason.endswith(f"> 0.92 (anchor {ids['seed1']})")
    name, reason = reasons[ids["drift"]]
    assert name == "anchor_window" and reason.startswith("drift: best anchor cosine")
    assert "< 0.65" in reason


@pytest.mark.parametrize("broken", [None, "duplicate_id", "null_run_id", "zero_weight"])
def test_failed_quality_gate_blocks_downstream(tmp_path, broken):
    mix, _ = _curation_mix()
    mix = mix.filter(~pl.col("is_synthetic"))
    if broken == "duplicate_id":
        mix = mix.with_columns(pl.lit(mix["id"][0]).alias("id"))
    elif broken == "null_run_id":
        mix = mix.with_columns(pl.lit(None, pl.Utf8).alias("run_id"))
    elif broken == "zero_weight":
        mix = mix.with_columns(pl.lit(0.0).alias("weight"))

    @dg.asset(deps=["decontaminated_mix"])
    def trainer() -> None:
        """Materializes whenever it runs: only the blocking gate can keep it out."""

    result = dg.materialize(
        [_stub("decontaminated_mix", mix), curation.decontaminated_mix_quality_gates, trainer],
        resources=_resources(tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    [gates] = result.get_asset_check_evaluations()
    assert gates.severity == dg.AssetCheckSeverity.ERROR
    assert gates.passed is (broken is None), gates.metadata["failed"].value
    assert len(result.asset_materializations_for_node("trainer")) == (broken is None)


def _round(seed: dict, leak: str) -> pl.DataFrame:
    """A coverage round: one good instruction, a rejected one, a leak, a PII one, filler."""
    ctx = RowContext(run_id="round-run")
    gen = Generator("scripted", "m", "r", "instruction_exercise", "h", "{}", 0)
    good = (
        "Explain how a Python for loop walks over the items of a list and when it stops.",
        "The loop takes each item of the list in order, runs its body once per item, and "
        "stops after the last item; a break statement ends it early.",
    )
    cases = [
        (good, True),
        (("Summarise the passage about loops.", "Loops repeat the body for every element."), False),
        ((leak, "The answer is worked out step by step from the numbers given."), True),
        (("Who maintains the loop documentation page?", "Write to jane.doe@example.com for "
          "the maintainers of the loop documentation and its examples."), True),
        (("ok", "ok ok"), True),
    ]  # fmt: skip
    rows = []
    for (prompt, response), accepted in cases:
        row = make_row(
            stage="stratified_instructions",
            payload={"prompt": prompt, "response": response},
            ctx=ctx,
            parents=[seed],
            generator=gen,
        )
        rows.append({**row, "accepted": accepted})
    schema = {"prompt": pl.Utf8, "response": pl.Utf8, "accepted": pl.Boolean}
    return rows_to_frame(rows, schema)


def test_coverage_round_is_curated_as_one_more_shard(tmp_path, gsm8k_test, gsm8k_questions):
    mix, _ = _curation_mix()
    seed = mix.filter(~pl.col("is_synthetic")).row(0, named=True)
    instance = dg.DagsterInstance.ephemeral()
    round_ = _stub("stratified_instructions", _round(seed, gsm8k_questions[0]))
    assert dg.materialize([round_], resources=_resources(tmp_path), instance=instance).success
    result = dg.materialize(
        [_mix_shards(mix, instance, tmp_path), round_.to_source_assets()[0],
         curation.decontaminated_mix],
        resources=_resources(tmp_path),
        run_config={"ops": {"decontaminated_mix": {"config": {
            "benchmark_paths": [str(gsm8k_test)]}}}},
        instance=instance,
    )  # fmt: skip
    assert result.success
    metadata = result.asset_materializations_for_node("decontaminated_mix")[0].metadata
    report = metadata["coverage_round"].value
    assert report["rows"] == 5 and report["accepted"] == 4 and report["pii_scrubbed"] == 1
    assert sum(report["failed_quality"].values()) == 1 and report["entering_curation"] == 3
    assert metadata["flagged_by_benchmark"].value.get("gsm8k-test") == 1
    out = pl.read_parquet(tmp_path / "data" / "decontaminated_mix.parquet")
    kept = out.filter(pl.col("stage") == "stratified_instructions")
    assert kept.get_column("kind").unique().to_list() == ["instruction"]
    texts = kept.get_column("text").to_list()
    assert len(texts) == 2 and any("for loop walks" in t for t in texts)
    assert not any("jane.doe@example.com" in t for t in texts)
    assert not any(gsm8k_questions[0] in t for t in texts)
