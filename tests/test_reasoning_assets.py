"""The reasoning assets through Dagster with a scripted oracle engine: every branch has data.

The smoke model's noise leaves preference pairs and debates empty, so this run drives
the asset shells with an engine that solves some problems, scores, judges and debates
deterministically.
"""

import dagster as dg
import polars as pl
import pytest

from resources.engine import GenerationEngine
from synth_assets import code, reasoning, seeds
from synth_assets import text as text_assets
from synth_lib.engines.base import GenerationRequest
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning.tasks import reasoning_gym_rows
from tests.scripted_engine import ScriptedEngine
from tests.shards import RGYM, materialize_shard, shard_file, write_shard

CTX = RowContext("upstream")
TASKS = {"tasks": ["chain_sum", "leg_counting"], "difficulties": ["easy"], "per_cell": 2}
GOLD = {r["question"]: r["gold"] for r in reasoning_gym_rows(TASKS["tasks"], ["easy"], 2, CTX)}
MATH = [
    make_row(
        stage="math_seeds",
        payload={"question": f"Tom has {n} apples and buys {n} more. How many?", "answer": "",
                 "gold": str(2 * n)},
        ctx=CTX,
        source=Source("gsm8k", f"train.jsonl:{n}", "MIT"),
    )
    for n in range(3, 9)
]  # fmt: skip


def oracle(request: GenerationRequest) -> str:
    prompt = request.prompt
    if "Decision: ACCEPT" in prompt:
        return "Decision: ACCEPT"
    if "Reply with exactly one of" in prompt:
        first = prompt.split("Response A:")[1].split("Response B:")[0]
        return "Verdict: A" if "carefully" in first else "Verdict: B"
    if "Rate how well" in prompt:
        return "Score: 9" if "carefully" in prompt.split("Response:")[-1] else "Score: 4"
    if "debating" in prompt:
        return "The text supports it."
    question = prompt.split("Problem: ")[1].split("\n\nSolution:")[0]
    gold = GOLD.get(question) or next(r["gold"] for r in MATH if r["question"] == question)
    index = request.request_id.rsplit(":", 1)[1]
    if index == "0":
        return f"Add carefully, term by term: the total is {gold}.\n#### {gold}"
    if index == "1":
        return f"Quick sum gives {gold}.\n#### {gold}"
    return "Roughly a hundred.\n#### 100"


def _program(solution: str, reject_reason: str | None) -> dict:
    problem = make_row(
        stage="code_problems", payload={"problem": "Add a and b."}, ctx=CTX, parents=[MATH[0]]
    )
    row = make_row(
        stage="verified_code",
        payload={"prompt": "Add a and b.", "response": solution, "tests": "", "function": "add"},
        ctx=CTX,
        parents=[problem],
    )
    row.update(
        candidate=0,
        repaired=False,
        accepted=reject_reason is None,
        reject_reason=reject_reason,
        sandbox_mode="test",
    )
    return row


class OracleEngine(GenerationEngine):
    def _build(self):
        return ScriptedEngine(oracle)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from resources.parquet_io import PolarsParquetIOManager

    home = tmp_path_factory.mktemp("oracle")
    data = home / "data"
    data.mkdir()
    text = make_row(
        stage="text_seeds",
        payload={"text": "Lists are mutable sequences.", "title": "lists"},
        ctx=CTX,
        source=Source("pydoc", "topics:lists", "PSF"),
    )
    rewrite = make_row(
        stage="rephrasings", payload={"text": "A list can change.", "style": "easy"}, ctx=CTX,
        parents=[text],
    )  # fmt: skip
    rewrite.update(accepted=True, prompt_tokens=1, completion_tokens=1)
    write_shard(rows_to_frame([text], seeds.TEXT_SCHEMA), data, "text_seeds", RGYM)
    write_shard(rows_to_frame(MATH, seeds.MATH_SCHEMA), data, "math_seeds", RGYM)
    write_shard(rows_to_frame([rewrite], text_assets.PAYLOAD_SCHEMA), data, "rephrasings", RGYM)
    programs = [_program("return a + b", None), _program("return a - b", "failed")]
    programs.append(_program("", "generation_failed"))
    for name, part in (("verified_code", programs[:1]), ("verified_code_rejects", programs[1:])):
        write_shard(rows_to_frame(part, code.CODE_SCHEMA), data, name, RGYM)
    resources = {
        "io_manager": PolarsParquetIOManager(base_dir=str(data)),
        "engine": OracleEngine(cache_dir=str(home / "cache"), models_dir=str(home / "models")),
    }
    config = {
        "reasoning_tasks": {"config": TASKS},
        "cot_traces": {"config": {"k": 4, "max_math_problems": 4}},
        "debate_verdicts": {"config": {"share": 1.0, "rounds": 1, "max_items": 8}},
    }
    result = materialize_shard(
        [
            seeds.seeds,
            text_assets.rephrasings,
            *code.verified_code.to_source_assets(),
            *dg.load_assets_from_modules([reasoning]),
            *dg.load_asset_checks_from_modules([reasoning]),
        ],
        selection=["reasoning_tasks", "cot_traces", "preference_pairs", "debate_verdicts"],
        shard=RGYM,
        resources=resources,
        run_config={"ops": config},
    )
    frames = {
        k: pl.read_parquet(shard_file(data, k, RGYM))
        for k in ("cot_traces", "preference_pairs", "debate_verdicts")
    }
    meta = {
        e.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
    return result, frames, meta


def test_cot_traces_keep_the_best_verified_trace_per_problem(run) -> None:
    result, frames, meta = run
    assert result.success
    traces = frames["cot_traces"]
    accepted = traces.filter(pl.col("accepted"))
    assert accepted.height == 8  # 4 GSM8K + 4 reasoning-gym problems, best of two correct
    assert accepted["response"].str.contains("carefully").all()
    reasons = traces.filter(~pl.col("accepted"))["drop_reason"].value_counts()
    assert dict(reasons.iter_rows()) == {"below_group_percentile": 8, "wrong_answer": 8}
    assert meta["cot_traces"]["pass_at_k"] == 1.0 and meta["cot_traces"]["sample_pass_rate"] == 0.5
    assert meta["cot_traces"]["rs_groups_with_threshold"] == 8
    weighted = accepted.filter(
        pl.col("verdicts")
        .list.eval(pl.element().struct.field("name") == "inverse_weight")
        .list.any()
    )
    # 10 seeds, 20% per task type: none rare by type; the sparsest decile is up-weighted
    assert weighted.height == 1 and weighted["weight"].to_list() == [5.0]
    assert accepted.filter(pl.col("weight") == 1.0).height == 7


def test_pairs_from_both_sources_and_debates(run) -> None:
    result, frames, meta = run
    pairs = frames["preference_pairs"]
    by_source = dict(pairs["pair_source"].value_counts().iter_rows())
    assert by_source == {"verified_cot": 8, "judged_cot": 8, "verified_code": 1}
    code_pair = pairs.filter(pl.col("pair_source") == "verified_code").row(0, named=True)
    assert (code_pair["chosen"], code_pair["rejected"]) == ("return a + b", "return a - b")
    judged = pairs.filter(pl.col("pair_source") == "judged_cot")
    assert judged["chosen"].str.contains("carefully").all()
    assert judged["constitution_hash"].n_unique() == 1
    debates = frames["debate_verdicts"]
    assert dict(debates["target_stage"].value_counts().iter_rows()) == {
        "rephrasings": 1,
        "preference_pairs": 8,
    }
    assert debates["accepted"].all() and debates["consistent"].all()
    assert meta["debate_verdicts"]["judge_consistency"] == 1.0
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"cot_traces_accepted_verified": True, "preference_pairs_well_formed": True}
