"""The reasoning stages end to end through the real transformers path with the smoke model.

The smoke model has random weights, so pass rates are ~0 and most output is truncated
noise: this proves the plumbing (requests, parsing of noise, provenance, metadata,
caching), not data quality. Debate and pairwise judging get few or no inputs from noise,
so they are also driven directly through the same engine.
"""

import os

import dagster as dg
import polars as pl
import pytest

from synth_assets import code, reasoning, seeds
from synth_assets import text as text_assets
from synth_jobs.profiles import local_resources
from synth_lib.engines.base import SamplingParams
from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning.debate import DebateItem, outcome_reason, run_debates, verdict_rows
from synth_lib.reasoning.judge import Comparison, Judge, decide, parse_preference
from tests.dagster_results import materialization_metadata
from tests.shards import RGYM, materialize_shard, shard_file, write_shard

pytestmark = pytest.mark.slow

ASSETS = [
    seeds.seeds,
    text_assets.rephrasings,
    *code.verified_code.to_source_assets(),
    *dg.load_assets_from_modules([reasoning]),
    *dg.load_asset_checks_from_modules([reasoning]),
]
REASONING_KEYS = ["reasoning_tasks", "cot_traces", "preference_pairs", "debate_verdicts"]


def _config(gsm8k: str) -> dict:
    return {
        "ops": {
            "seeds": {"config": {"gsm8k_path": gsm8k}},
            "rephrasings": {"config": {"max_seeds": 2, "styles": ["easy"], "max_tokens": 16}},
            "reasoning_tasks": {
                "config": {"tasks": ["chain_sum", "gcd"], "difficulties": ["easy", "hard"]}
            },
            "cot_traces": {"config": {"k": 2, "max_math_problems": 2, "max_tokens": 24}},
            "debate_verdicts": {"config": {"share": 1.0, "rounds": 1, "max_tokens": 12}},
        }
    }


@pytest.fixture(scope="module")
def graph(tmp_path_factory, smoke_models_dir):
    home = tmp_path_factory.mktemp("reasoning")
    resources = local_resources(home)
    resources["engine"] = resources["engine"].model_copy(
        update={"models_dir": str(smoke_models_dir)}
    )
    # the code stage needs the sandbox; here its outputs are present but empty
    (home / "data").mkdir()
    for name in ("verified_code", "verified_code_rejects"):
        write_shard(rows_to_frame([], code.CODE_SCHEMA), home / "data", name, RGYM)
    config = _config(os.environ.get("SYNTH_GSM8K_PATH", ""))
    # the reasoning-gym shard: its tasks are the problems (GSM8K shards bring math ones)
    result = materialize_shard(ASSETS, RGYM, resources=resources, run_config=config)
    return home, resources, config, result


def test_stages_materialize_with_metadata(graph) -> None:
    home, _, _, result = graph
    assert result.success
    tasks_meta = materialization_metadata(result, "reasoning_tasks")
    assert tasks_meta["dagster/row_count"] == 4
    cot = materialization_metadata(result, "cot_traces")
    assert cot["smoke_model"] is True and cot["engine_requests"] > 0
    assert cot["requests"] >= cot["problems"] * 2
    assert cot["requests_per_s"] > 0
    assert "| chain_sum | hard |" in cot["pass_rate_by_task"]
    pairs = materialization_metadata(result, "preference_pairs")
    assert len(pairs["constitution_hash"]) == 16
    frames = {k: pl.read_parquet(shard_file(home / "data", k, RGYM)) for k in REASONING_KEYS}
    traces = frames["cot_traces"]
    assert traces.height > 0, "wrong and rationalized samples are rows too"
    assert traces["generator"].struct.field("is_smoke_model").all()
    assert traces.filter(pl.col("accepted"))["correct"].all()
    # the headline rates follow from the rows: recomputed here, not range-checked
    sampled = traces.filter(~pl.col("rationalized"))
    solved = sampled.filter(pl.col("correct"))["problem_id"].n_unique()
    assert cot["pass_at_k"] == round(solved / cot["problems"], 4)
    assert cot["sample_pass_rate"] == round(sampled["correct"].sum() / (cot["problems"] * 2), 4)
    attempts = cot["rationalization_attempts"]
    assert attempts == cot["problems"] - solved  # one STaR attempt per unsolved problem
    rationalized = traces.filter(pl.col("rationalized")).height
    assert cot["rationalization_yield"] == (round(rationalized / attempts, 4) if attempts else 0)
    assert frames["preference_pairs"].columns[:3] == ["prompt", "chosen", "rejected"]
    assert "transcript_sha256" in frames["debate_verdicts"].columns
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "cot_traces_accepted_verified": True,
        "preference_pairs_well_formed": True,
        "search_traces_verified": True,
    }


def _sample_keys(frame: pl.DataFrame) -> set[str]:
    """The request id each trace row answers (`rationalize` for the sample index after k)."""
    k = _config("")["ops"]["cot_traces"]["config"]["k"]
    return {
        f"{p}:{'rationalize' if i == k else i}"
        for p, i in frame.select("problem_id", "sample_index").iter_rows()
    }


def test_rerun_hits_the_cache_and_keeps_ids(graph) -> None:
    home, resources, config, first = graph
    before = pl.read_parquet(shard_file(home / "data", "cot_traces", RGYM))
    # transient failures (e.g. a smoke-model answer with a NUL, rejected by validation) are
    # never cached, so the re-run sends exactly those again; everything else is a cache hit
    failed = [f for f in resources["engine"].cache.failures() if f["stage"] == "cot_traces"]
    resent = {f["request_id"] for f in failed if f["retryable"]}
    first_meta = materialization_metadata(first, "cot_traces")
    assert len(resent) == first_meta["generation_failures_retryable"]
    again = materialize_shard(
        ASSETS,
        RGYM,
        selection=["cot_traces"],
        resources=resources,
        run_config={"ops": {"cot_traces": config["ops"]["cot_traces"]}},
    )
    meta = materialization_metadata(again, "cot_traces")
    assert meta["engine_requests"] == len(resent)
    assert meta["cache_hits"] == meta["requests"] - len(resent)
    after = pl.read_parquet(shard_file(home / "data", "cot_traces", RGYM))
    assert set(before["id"]) <= set(after["id"]), "rows from cached answers keep their ids"
    new_rows = after.filter(~pl.col("id").is_in(before["id"].implode()))
    assert _sample_keys(new_rows) <= resent, "new rows come only from re-sent requests"


def test_debate_and_judge_parse_smoke_model_noise(graph) -> None:
    _, resources, _, _ = graph
    engine = resources["engine"].engine_for("reasoning-smoke")
    ctx = RowContext("smoke")
    seed = make_row(
        stage="text_seeds", payload={"text": "t"}, ctx=ctx, source=Source("d", "1", "x")
    )
    target = make_row(stage="rephrasings", payload={"text": "r"}, ctx=ctx, parents=[seed])
    outcomes = run_debates(
        [DebateItem("The rewrite is faithful.", "Source: t\nRewrite: r", target)],
        engine,
        rounds=1,
        sampling=SamplingParams(0.7, 0.95, 8),
        judge_sampling=SamplingParams(0.0, 1.0, 8),
    )
    [outcome] = outcomes
    [row] = verdict_rows(outcomes, engine, ctx, rounds=1)
    turns = outcome.transcript.count("[Round 1] ")
    if outcome.reason.startswith("debater_"):
        # a failed turn ends the debate there: no judge is asked
        assert outcome.decisions == (None, None) and not outcome.consistent
        debate_requests = turns
    else:
        assert turns == 2 and outcome.reason == outcome_reason(*outcome.decisions)[2]
        debate_requests = turns + 2  # both speakers, then the judge in both orders
    assert (row["reason"], row["accepted"]) == (outcome.reason, outcome.accepted)
    assert row["accepted"] == (row["reason"] == "judge_accepted")
    assert row["transcript_sha256"] == sha256_hex(outcome.transcript)
    assert row["generator"]["is_smoke_model"] is True
    judgement = Judge(engine, sampling=SamplingParams(0.0, 1.0, 8)).compare(
        [Comparison("k", "2+2?", "4", "5")]
    )[0]
    # each pass is read from its own raw reply, and the pair decides together
    assert judgement.forward == parse_preference(judgement.raw_forward)
    assert judgement.backward == parse_preference(judgement.raw_backward)
    assert (judgement.winner, judgement.reason) == decide(judgement.forward, judgement.backward)
    assert engine.stats.engine_calls == debate_requests + 2
