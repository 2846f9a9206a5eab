"""The new kinds' assets on one shard with a scripted engine, then the coverage round.

instructions, dialogues, code_explanations, search_traces and quality_scores run on one
shard; coverage and stratified_instructions then run across shards, as `make run` does.
"""

import inspect
import re
import statistics

import dagster as dg
import polars as pl
import pytest

from resources.engine import GenerationEngine
from synth_assets import code, curation, reasoning, seeds
from synth_assets import text as text_assets
from synth_assets.partitions import SEED_SHARDS
from synth_lib.engines.base import GenerationRequest
from synth_lib.mix.shards import to_mix_schema
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.reasoning import cot
from synth_lib.reasoning import tasks as reasoning_tasks
from tests.scripted_engine import ScriptedEngine

pytestmark = pytest.mark.slow
CTX = RowContext("upstream")
SHARD = "ref-n64-00000"
LOOPS = (
    "The for statement iterates over the elements of a sequence such as a string, tuple or "
    "list, in the order that they appear. An else clause runs when the loop ends normally."
)
DICTS = (
    "A dictionary maps hashable keys to arbitrary values. Looking up a missing key raises "
    "KeyError, while the get method returns a default value instead of raising."
)
TEXTS = [
    make_row(stage="text_seeds", payload={"text": t, "title": n}, ctx=CTX,
             source=Source("pydoc", f"topics:{n}", "PSF-2.0"))
    for n, t in (("for", LOOPS), ("dict", DICTS))
]  # fmt: skip
FIRST, SECOND = sorted(TEXTS, key=lambda r: r["id"])  # the stages take seeds in id order
MEDIAN = make_row(
    stage="code_seeds",
    payload={"text": inspect.getsource(statistics.median), "name": "statistics.median",
             "module": "statistics"},
    ctx=CTX,
    source=Source("cpython-stdlib", "statistics.median", "PSF-2.0"),
)  # fmt: skip
MATH = make_row(
    stage="math_seeds",
    payload={"question": "Tom has 3 apples and gets 4 more. How many now?", "answer": "",
             "gold": "7"},
    ctx=CTX,
    source=Source("gsm8k", "train.jsonl:1", "MIT"),
)  # fmt: skip


def _passage(prompt: str) -> str:
    return prompt.split("Passage:\n", 1)[1].split("\n\n", 1)[0]


def oracle(request: GenerationRequest) -> str:
    """Grounded answers: every text repeats words of the passage it was asked about."""
    prompt = request.prompt
    if "Next step:" in prompt:
        return "Add 3 and 4 to get 7." if request.seed % 2 else "Multiply 3 and 4 to get 12."
    if "Continuation:" in prompt:
        return "So the total is 7.\n#### 7" if "get 7" in prompt else "So 12.\n#### 12"
    if prompt.rstrip().endswith("Solution:"):  # plain sampling of a whole solution
        return "Multiply: 12.\n#### 12"
    if "Rate how well" in prompt:
        return "Score: 8"
    if "Using only this explanation" in prompt:
        return "2"
    if "Explain step by step" in prompt:
        return "It sorts the data and returns the middle element, or the mean of the middle two."
    words = " ".join(_passage(prompt).split()[:9])
    if "Rewritten task:" in prompt:
        task = prompt.split("\nTask: ")[1].split("\n\nRewritten task:")[0]
        return f"{task} Explain why, with one example."
    if "Answer the task below" in prompt:
        return f"In short: {words}, as the reference explains in its first sentence."
    if "Write one task" in prompt:
        who = re.search(r"The task is for (.+?)\.\n", prompt)
        return f"Explain what this means: {words}. For {who.group(1) if who else 'anyone'}."
    if "Write a question about the passage" in prompt:  # a dialogue's user turn
        asked = prompt.count('"') - 2  # two quotes around the opener, two per earlier question
        return ("What does the passage say first?", "And in other words?", "Why?")[asked // 2]
    if "Answer the question below" in prompt:  # a dialogue's assistant turn
        said = (f"{words}.", f"That {words.lower()} in short.", "Because it says so.")
        return said[prompt.count("\nAnswer: ")]
    raise AssertionError(f"unexpected prompt: {prompt[:80]}")


class OracleEngine(GenerationEngine):
    def _build(self):
        return ScriptedEngine(oracle)


@pytest.fixture(scope="module")
def run(tmp_path_factory, smoke_models_dir):
    from resources.parquet_io import PolarsParquetIOManager

    home = tmp_path_factory.mktemp("instructions")
    data = home / "data"
    call = make_row(
        stage="execution_traces",
        payload={"prompt": "", "response": "2", "expression": "statistics.median([3, 1, 2])",
                 "function": "statistics.median", "outcome": "value"},
        ctx=CTX,
        parents=[MEDIAN],
    )  # fmt: skip
    for name, rows, schema in (
        ("text_seeds", TEXTS, seeds.TEXT_SCHEMA),
        ("code_seeds", [MEDIAN], seeds.CODE_SCHEMA),
        ("math_seeds", [MATH], seeds.MATH_SCHEMA),
        ("reasoning_tasks", [], reasoning_tasks.PAYLOAD_SCHEMA),
        ("execution_traces", [call], code.TRACE_SCHEMA),
        ("rephrasings", [], text_assets.PAYLOAD_SCHEMA),
        ("cot_traces", [], cot.FRAME_SCHEMA),
    ):
        (data / name).mkdir(parents=True)
        rows_to_frame(rows, schema).write_parquet(data / name / f"{SHARD}.parquet")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SEED_SHARDS, [SHARD])
    resources = {
        "io_manager": PolarsParquetIOManager(base_dir=str(data)),
        "engine": OracleEngine(cache_dir=str(home / "cache"), models_dir=str(home / "models")),
    }
    sources = [
        *seeds.seeds.to_source_assets(),
        *code.execution_traces.to_source_assets(),
        *reasoning.reasoning_tasks.to_source_assets(),
        *reasoning.cot_traces.to_source_assets(),
        *text_assets.rephrasings.to_source_assets(),
    ]
    model_dir = next(p.parent for p in smoke_models_dir.rglob("config.json"))
    one_text = {"max_text_seeds": 1, "max_code_seeds": 1}
    shard_run = dg.materialize(
        [
            *sources,
            text_assets.instructions,
            text_assets.dialogues,
            code.code_explanations,
            reasoning.search_traces,
            curation.quality_scores,
            text_assets.dialogues_roles_alternate,
            text_assets.instructions_judged,
            code.code_explanations_predict_execution,
            reasoning.search_traces_verified,
        ],
        partition_key=SHARD,
        resources=resources,
        instance=instance,
        run_config={"ops": {
            "instructions": {"config": {**one_text, "persona_probe_variants": 2}},
            "dialogues": {"config": {**one_text, "max_code_seeds": 0, "requested_turns": [2]}},
            "search_traces": {
                "config": {"iterations": 6, "max_children": 2, "max_task_problems": 2,
                           "max_math_problems": 1}
            },
            "quality_scores": {"config": {"perplexity_model": str(model_dir),
                                          "max_perplexity": None}},
        }},
    )  # fmt: skip
    # the cross-shard round reads every shard, as the curation job does after the shard runs
    cross_run = dg.materialize(
        [
            *sources,
            *text_assets.instructions.to_source_assets(),
            *text_assets.dialogues.to_source_assets(),
            curation.coverage,
            text_assets.stratified_instructions,
        ],
        resources=resources,
        instance=instance,
        run_config={
            "ops": {
                "coverage": {"config": {"k": 2, "budget": 1}},
                "stratified_instructions": {"config": {"measure_baseline": True}},
            }
        },
    )
    kinds = ("instructions", "dialogues", "code_explanations", "search_traces", "quality_scores")
    frames = {k: pl.read_parquet(data / k / f"{SHARD}.parquet") for k in kinds}
    for k in ("coverage", "stratified_instructions"):
        frames[k] = pl.read_parquet(data / f"{k}.parquet")
    meta = {
        e.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for run in (shard_run, cross_run)
        for e in run.get_asset_materialization_events()
    }
    return shard_run, cross_run, frames, meta


def test_each_kind_has_accepted_rows_and_passing_checks(run):
    shard_run, _, frames, meta = run
    assert shard_run.success
    assert frames["instructions"].height == 2  # one text seed, one code seed
    for name in ("instructions", "dialogues", "code_explanations", "search_traces"):
        assert frames[name].get_column("accepted").all(), name
        assert frames[name].height >= 1, name
    assert meta["instructions"]["pass_rate"] == meta["dialogues"]["pass_rate"] == 1.0
    checks = {c.check_name: c.passed for c in shard_run.get_asset_check_evaluations()}
    assert checks == {
        "dialogues_roles_alternate": True,
        "instructions_judged": True,
        "code_explanations_predict_execution": True,
        "search_traces_verified": True,
    }


def test_persona_diversity_is_in_the_metadata(run):
    _, _, frames, meta = run
    diversity = meta["instructions"]["persona_diversity"]
    assert diversity["rows_with_personas"] == diversity["rows_without_personas"] == 4
    assert meta["instructions"]["persona_distinct_2_gain"] > 1.0
    assert frames["instructions"].get_column("persona_set").str.starts_with("personas_v1@").all()


def test_the_mix_sees_messages_and_a_text_view(run):
    _, _, frames, _ = run
    row = to_mix_schema(frames["dialogues"], "dialogue").row(0, named=True)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user", "assistant"]
    assert row["text"].startswith("user: What does the passage say first?")
    instructions = to_mix_schema(frames["instructions"], "instruction")
    assert instructions.get_column("messages").is_null().all()
    assert instructions.get_column("text").str.contains("In short: ").all()


def test_search_finds_what_plain_sampling_missed_at_equal_tokens(run):
    _, _, frames, meta = run
    row = frames["search_traces"].row(0, named=True)
    assert row["method"] == "mcts" and row["predicted"] == "7"
    found = meta["search_traces"]
    assert found["solved_problems"] == 1 and found["sampling_solved_problems"] == 0
    assert found["sampling_tokens"] >= found["search_tokens"] > 0
    assert found["verified_rows_per_1k_tokens_mcts"] > 0.0
    assert found["verified_rows_per_1k_tokens_sampling"] == 0.0


def test_quality_scores_every_accepted_synthetic_row(run):
    _, _, frames, meta = run
    scores = frames["quality_scores"]
    stages = ("instructions", "dialogues", "code_explanations", "search_traces")
    assert scores.height == sum(int(frames[k]["accepted"].sum()) for k in stages)
    assert set(scores["stage"]) == set(stages)
    assert (scores["perplexity"] > 1.0).all()  # the real causal-LM path, smoke weights
    assert meta["quality_scores"]["pass_rate"] > 0.0


def test_coverage_sends_the_next_round_to_the_sparse_cluster(run):
    _, cross_run, frames, meta = run
    assert cross_run.success
    clusters = frames["coverage"].sort("cluster")
    assert clusters["seeds"].to_list() == [1, 1]
    # round one wrote about FIRST only: SECOND's cluster is the sparse one and gets the budget
    sparse = clusters.filter(pl.col("sparse")).row(0, named=True)
    assert sparse["exemplar_ids"] == [SECOND["id"]] and sparse["allocated"] == 1
    assert clusters.filter(~pl.col("sparse"))["allocated"].to_list() == [0]
    row = frames["stratified_instructions"].row(0, named=True)
    assert row["parent_ids"] == [SECOND["id"]] and row["cluster"] == sparse["cluster"]
    assert row["stage"] == "stratified_instructions"
    strat = meta["stratified_instructions"]
    assert strat["lost_before_response"] == {} and strat["rejection_reasons"] == "_none_"
    assert strat["coverage_entropy_after"] > strat["coverage_entropy_before"]
    assert strat["coverage_entropy_after"] >= strat["coverage_entropy_after_uniform"]
    assert meta["coverage"]["planned_entropy_stratified"] > meta["coverage"]["coverage_entropy"]
