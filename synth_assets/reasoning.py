"""Reasoning and preference data: verified CoT with STaR, MCTS search, DPO pairs, debates."""

import time
from collections import Counter
from dataclasses import asdict
from importlib.metadata import version

import dagster as dg
import polars as pl
from pydantic import Field

from resources.engine import GenerationEngine
from synth_assets.common import GPU_STEP, frame_output, generation_metadata, row_context
from synth_assets.partitions import SHARDED, shard_of
from synth_lib.engines.base import SamplingParams
from synth_lib.engines.cache import CachedEngine
from synth_lib.prompts import load_template, templates_hash
from synth_lib.provenance.schema import rows_to_frame
from synth_lib.reasoning import cot, debate, judge, preference, search, tasks
from synth_lib.reasoning.curate import curate
from synth_lib.reasoning.debate_targets import debate_targets
from synth_lib.reasoning.tasks import DEFAULT_TASKS, DIFFICULTY_LEVELS
from synth_lib.reporting import counts_table, markdown_table
from synth_lib.seeds.sharding import REASONING_GYM

GROUP = "reasoning"
JUDGE_TEMPLATES = (judge.CONSTITUTION, judge.PAIRWISE_TEMPLATE, judge.SCORE_TEMPLATE)


def _model_metadata(
    cached: CachedEngine, engine: GenerationEngine, accepted: int, elapsed: float
) -> dict:
    """The shared generation metadata plus this stage's request rate."""
    return {
        **generation_metadata(cached, accepted, engine.prices()),
        "requests_per_s": round(cached.stats.requests / elapsed, 2) if elapsed else 0.0,
    }


def _with_verdict(frame: pl.DataFrame, name: str) -> int:
    """Rows of `frame` carrying a verdict called `name`."""
    if not frame.height:
        return 0
    return frame.filter(
        pl.col("verdicts").list.eval(pl.element().struct.field("name") == name).list.any()
    ).height


def _hashes(*names: str) -> dg.MetadataValue:
    return dg.MetadataValue.json({name: load_template(name).hash for name in names})


class ReasoningTasksConfig(dg.Config):
    """Which procedural reasoning-gym tasks to generate, at which difficulties."""

    tasks: list[str] = Field(
        default=list(DEFAULT_TASKS), description="reasoning-gym dataset names (with curricula)."
    )
    difficulties: list[str] = Field(
        default=["easy", "medium"], description=f"Subset of {list(DIFFICULTY_LEVELS)}."
    )
    per_cell: int = Field(
        default=0, description="Problems per (task, difficulty) (0: the shard key's size)."
    )
    seed: int = Field(
        default=0,
        description="Base seed of the generators (recorded per row); shard n uses seed + n.",
    )


@dg.asset(group_name=GROUP, kinds={"polars"}, code_version="reasoning-tasks-2", **SHARDED)
def reasoning_tasks(
    context: dg.AssetExecutionContext, config: ReasoningTasksConfig
) -> dg.MaterializeResult:
    """Procedural problems of an `rgym-*` shard (other shards: none), each row a seed."""
    key = shard_of(context)
    rows = []
    if key.origin == REASONING_GYM:
        rows = tasks.reasoning_gym_rows(
            config.tasks,
            config.difficulties,
            config.per_cell or key.size,
            row_context(context),
            config.seed + key.index,
        )
    frame = rows_to_frame(rows, tasks.PAYLOAD_SCHEMA)
    cells = frame.group_by("task_type", "difficulty").len().sort("task_type", "difficulty")
    extra = {
        "reasoning_gym_version": version("reasoning-gym"),
        "license": tasks.LICENSE,
        "problems_by_task": dg.MetadataValue.md(markdown_table(cells.to_dicts())),
    }
    return frame_output(frame, ["task_type", "difficulty", "question", "gold"], extra)


class CotConfig(dg.Config):
    """Sampling, verification, rejection sampling and weighting of chain-of-thought traces."""

    k: int = Field(default=4, description="Solutions sampled per problem (pass@K).")
    max_math_problems: int = Field(
        default=2,
        description="GSM8K problems used per shard (0: all); the 135M default solves few.",
    )
    max_task_problems: int = Field(
        default=0, description="reasoning-gym problems used per shard (0: all)."
    )
    temperature: float = Field(default=0.8, description="Sampling temperature of the solver.")
    top_p: float = Field(default=0.95, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=160, description="Completion budget; hitting it = truncated.")
    rationalize: bool = Field(default=True, description="STaR rationalization for unsolved.")
    min_rationale_words: int = Field(default=8, description="Shortest acceptable rationale.")
    force_answer: bool = Field(
        default=True,
        description="A finished sample stating no final answer gets one answer-only request; "
        "the answer is verified like any other, and the row gets an `answer_forced` verdict.",
    )
    force_max_tokens: int = Field(default=12, description="Budget of the answer-only request.")
    judge_scoring: bool = Field(
        default=True, description="Score kept traces with the constitution judge."
    )
    judge_max_tokens: int = Field(default=16, description="Completion budget of the judge.")
    rs_percentile: float = Field(
        default=90.0, description="Keep traces at/above this judge-score percentile per problem."
    )
    rare_weight: float = Field(default=5.0, description="Weight of verified rare-problem traces.")
    low_density_quantile: float = Field(
        default=0.1, description="Seed-density quantile below which a problem is rare."
    )
    rare_task_share: float = Field(
        default=0.05, description="Task types under this share of all seeds are rare."
    )
    seed: int = Field(default=0, description="Base sampling seed (part of the cache key).")


@dg.asset(
    group_name=GROUP,
    kinds={"polars"},
    code_version=f"cot-1-{templates_hash(*cot.TEMPLATES, *JUDGE_TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def cot_traces(
    context: dg.AssetExecutionContext,
    config: CotConfig,
    engine: GenerationEngine,
    math_seeds: pl.DataFrame,
    reasoning_tasks: pl.DataFrame,
) -> dg.MaterializeResult:
    """Verified step-by-step solutions (`accepted`), with every failed sample and its reason."""
    math = math_seeds.sort("id")
    procedural = reasoning_tasks.sort("id")
    chosen_math = math.head(config.max_math_problems) if config.max_math_problems else math
    if config.max_task_problems:
        procedural = procedural.head(config.max_task_problems)
    problems = tasks.problems_from_rows(chosen_math.to_dicts() + procedural.to_dicts())
    distribution = [(r["id"], r["question"], tasks.GSM8K_TASK) for r in math.iter_rows(named=True)]
    distribution += [
        (r["id"], r["question"], r["task_type"]) for r in reasoning_tasks.iter_rows(named=True)
    ]
    cached = engine.engine_for(cot.STAGE)
    began = time.perf_counter()
    outcome = cot.solve(
        problems,
        cached,
        row_context(context),
        k=config.k,
        sampling=SamplingParams(config.temperature, config.top_p, config.max_tokens),
        rationalize=config.rationalize,
        base_seed=config.seed,
        min_rationale_words=config.min_rationale_words,
        forcing=cot.AnswerForcing(config.force_max_tokens) if config.force_answer else None,
    )
    scorer = judge.Judge(
        cached, sampling=SamplingParams(0.0, 1.0, config.judge_max_tokens), seed=config.seed
    )
    curated = curate(
        outcome,
        problems,
        distribution,
        judge=scorer if config.judge_scoring else None,
        percentile=config.rs_percentile,
        rare_weight=config.rare_weight,
        low_density_quantile=config.low_density_quantile,
        rare_task_share=config.rare_task_share,
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(curated.rows, cot.FRAME_SCHEMA)
    accepted = frame.filter(pl.col("accepted"))
    thresholds = [t.threshold for t in curated.thresholds if t.threshold is not None]
    if not problems:
        context.log.warning("no problems: math_seeds and reasoning_tasks are both empty")
    extra = {
        **_model_metadata(cached, engine, accepted.height, elapsed),
        **cot.cot_summary(problems, outcome, config.k),
        "rationalized_rows": int(accepted["rationalized"].sum()) if accepted.height else 0,
        "answer_forced_rows": _with_verdict(accepted, "answer_forced"),
        "pass_rate_by_task": dg.MetadataValue.md(
            markdown_table(cot.pass_table(problems, outcome, config.k))
        ),
        "drop_reasons": dg.MetadataValue.md(counts_table(curated.drops)),
        "rs_percentile": config.rs_percentile,
        "rs_groups_with_threshold": len(thresholds),
        "rs_median_threshold": float(pl.Series(thresholds).median()) if thresholds else None,
        "rs_thresholds": dg.MetadataValue.md(
            markdown_table([asdict(t) for t in curated.thresholds if t.threshold is not None][:20])
        ),
        "judge_unscored_traces": curated.unscored,
        "upweighted_rows": dg.MetadataValue.json(dict(curated.weighted)),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "template_hashes": _hashes(*cot.TEMPLATES, *JUDGE_TEMPLATES),
    }
    preview = ["accepted", "task_type", "difficulty", "predicted", "gold", "weight", "response"]
    return frame_output(frame, preview, extra)


class PreferenceConfig(dg.Config):
    """How DPO pairs are built from verified and judged responses."""

    max_pairs_per_prompt: int = Field(default=2, description="Verified pairs per prompt.")
    include_code: bool = Field(
        default=True, description="Pair sandbox-passed code with failed code for the same prompt."
    )
    judged: bool = Field(
        default=True, description="Also build RLAIF pairs from correct-vs-correct traces."
    )
    judged_pairs_per_prompt: int = Field(default=1, description="Judged pairs per prompt.")
    judge_max_tokens: int = Field(default=16, description="Completion budget of the judge.")
    seed: int = Field(default=0, description="Judge seed (part of the cache key).")


@dg.asset(
    group_name=GROUP,
    kinds={"polars"},
    code_version=f"pairs-1-{templates_hash(*JUDGE_TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def preference_pairs(
    context: dg.AssetExecutionContext,
    config: PreferenceConfig,
    engine: GenerationEngine,
    cot_traces: pl.DataFrame,
    verified_code: pl.DataFrame,
    verified_code_rejects: pl.DataFrame,
) -> dg.MaterializeResult:
    """TRL DPO rows (prompt/chosen/rejected): verified pairs (CoT, code), then judged pairs."""
    ctx = row_context(context)
    traces = cot_traces.sort("id")
    correct = traces.filter(pl.col("correct"))
    began = time.perf_counter()
    verified = preference.verified_pairs(
        preference.candidates_from_frame(traces.filter(pl.col("accepted"))),
        preference.candidates_from_frame(traces.filter(~pl.col("correct"))),
        ctx,
        source="verified_cot",
        max_pairs_per_prompt=config.max_pairs_per_prompt,
    )
    if config.include_code:
        code = preference.code_pairs(
            verified_code, verified_code_rejects, ctx, config.max_pairs_per_prompt
        )
        verified.rows += code.rows
        verified.drops.update(code.drops)
    cached = engine.engine_for(preference.STAGE)
    rlaif = preference.PairOutcome()
    if config.judged:
        rlaif = preference.judged_pairs(
            preference.candidates_from_frame(correct),
            judge.Judge(
                cached, sampling=SamplingParams(0.0, 1.0, config.judge_max_tokens), seed=config.seed
            ),
            ctx,
            source="judged_cot",
            max_pairs_per_prompt=config.judged_pairs_per_prompt,
        )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(verified.rows + rlaif.rows, preference.FRAME_SCHEMA)
    by_source = Counter(frame["pair_source"].to_list())
    extra = {
        **_model_metadata(cached, engine, frame.height, elapsed),
        "pairs_by_source": dg.MetadataValue.md(counts_table(by_source, "source", "pairs")),
        "drop_reasons": dg.MetadataValue.md(counts_table(verified.drops + rlaif.drops)),
        "judge_comparisons": sum(rlaif.drops.values()) + len(rlaif.rows),
        "constitution_hash": load_template(judge.CONSTITUTION).hash,
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "template_hashes": _hashes(*JUDGE_TEMPLATES),
    }
    return frame_output(frame, ["pair_source", "prompt", "chosen", "rejected", "weight"], extra)


class DebateConfig(dg.Config):
    """Which unverifiable samples are debated, for how long."""

    share: float = Field(
        default=0.25, description="Share of accepted rephrasings and judged pairs debated (by id)."
    )
    max_items: int = Field(
        default=3, description="Cap on debated samples per source stage and shard (0: no cap)."
    )
    rounds: int = Field(default=1, description="Proponent/opponent rounds before judging.")
    max_tokens: int = Field(default=128, description="Completion budget per debate turn.")
    judge_max_tokens: int = Field(default=16, description="Completion budget of the judge.")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


@dg.asset(
    group_name=GROUP,
    kinds={"polars"},
    code_version=f"debate-1-{templates_hash(*debate.TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def debate_verdicts(
    context: dg.AssetExecutionContext,
    config: DebateConfig,
    engine: GenerationEngine,
    rephrasings: pl.DataFrame,
    preference_pairs: pl.DataFrame,
    text_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Debate-checked verdicts on unverifiable samples; rejected ones must leave the mix."""
    items = debate_targets(
        rephrasings, preference_pairs, text_seeds, share=config.share, max_items=config.max_items
    )
    cached = engine.engine_for(debate.STAGE)
    judge_sampling = SamplingParams(0.0, 1.0, config.judge_max_tokens)
    began = time.perf_counter()
    outcomes = debate.run_debates(
        items,
        cached,
        rounds=config.rounds,
        sampling=SamplingParams(0.7, 0.95, config.max_tokens),
        judge_sampling=judge_sampling,
        seed=config.seed,
    )
    rows = debate.verdict_rows(
        outcomes,
        cached,
        row_context(context),
        rounds=config.rounds,
        judge_sampling=judge_sampling,
        seed=config.seed,
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(rows, debate.PAYLOAD_SCHEMA)
    accepted = int(frame["accepted"].sum()) if frame.height else 0
    extra = {
        **_model_metadata(cached, engine, accepted, elapsed),
        "debated": frame.height,
        "debated_by_stage": dg.MetadataValue.json(dict(Counter(frame["target_stage"].to_list()))),
        "accepted": accepted,
        "rejected": frame.height - accepted,
        "judge_consistency": round(float(frame["consistent"].mean()), 4) if frame.height else None,
        "reasons": dg.MetadataValue.md(counts_table(Counter(frame["reason"].to_list()))),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "template_hashes": _hashes(*debate.TEMPLATES),
    }
    return frame_output(frame, ["target_stage", "verdict", "reason", "transcript_sha256"], extra)


@dg.asset_check(
    asset=cot_traces, blocking=True, description="Accepted traces are verified and weighted."
)
def cot_traces_accepted_verified(cot_traces: pl.DataFrame) -> dg.AssetCheckResult:
    accepted = cot_traces.filter(pl.col("accepted"))
    problems = {
        "accepted_not_correct": accepted.filter(~pl.col("correct")).height,
        "accepted_without_answer": accepted.filter(pl.col("predicted").is_null()).height,
        "weight_below_one": accepted.filter(pl.col("weight") < 1.0).height,
        "rationalized_without_verdict": accepted.filter(
            pl.col("rationalized")
            & ~pl.col("verdicts")
            .list.eval(pl.element().struct.field("name") == "rationalized")
            .list.any()
        ).height,
    }
    return dg.AssetCheckResult(
        passed=not any(problems.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"accepted_rows": accepted.height, **problems},
    )


@dg.asset_check(
    asset=preference_pairs, blocking=True, description="Every pair is a usable DPO example."
)
def preference_pairs_well_formed(preference_pairs: pl.DataFrame) -> dg.AssetCheckResult:
    empty = pl.any_horizontal(
        pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
        for c in ("prompt", "chosen", "rejected")
    )
    problems = {
        "empty_fields": preference_pairs.filter(empty).height,
        "chosen_equals_rejected": preference_pairs.filter(
            pl.col("chosen").str.strip_chars() == pl.col("rejected").str.strip_chars()
        ).height,
        "not_two_parents": preference_pairs.filter(pl.col("parent_ids").list.len() != 2).height,
        "judged_without_constitution": preference_pairs.filter(
            pl.col("pair_source").str.starts_with("judged") & pl.col("constitution_hash").is_null()
        ).height,
    }
    return dg.AssetCheckResult(
        passed=not any(problems.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"pairs": preference_pairs.height, **problems},
    )


SEARCH_SCHEMA = {**cot.PAYLOAD_SCHEMA, "method": pl.Utf8, "search_steps": pl.Int64,
                 "accepted": pl.Boolean}  # fmt: skip


class SearchConfig(dg.Config):
    """How many problems per shard get a search tree, its size, and the sampling baseline."""

    max_math_problems: int = Field(
        default=0,
        description="GSM8K problems per shard (0: none). The 135M default solved none of them "
        "on either side of the comparison, so the default run searches reasoning-gym only.",
    )
    max_task_problems: int = Field(
        default=1, description="reasoning-gym problems per shard (easiest first, one per task)."
    )
    iterations: int = Field(
        default=3, description="MCTS iterations per problem (the first rolls out the root)."
    )
    max_children: int = Field(default=2, description="Children per node (progressive widening).")
    max_depth: int = Field(default=3, description="Steps before a node is rolled out as final.")
    exploration: float = Field(default=1.4, description="UCT exploration constant c.")
    root_rollout: bool = Field(
        default=True, description="Roll out the root first (a plain sample) before expanding."
    )
    step_max_tokens: int = Field(default=64, description="Completion budget of one step.")
    rollout_max_tokens: int = Field(default=256, description="Completion budget of a rollout.")
    force_answer: bool = Field(
        default=True, description="Ask an answerless finished rollout for its answer (both sides)."
    )
    compare_sampling: bool = Field(
        default=True, description="Also sample whole solutions at the same token budget."
    )
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


def _per_1k(rows: int, tokens: int) -> float:
    return round(1000 * rows / tokens, 4) if tokens else 0.0


@dg.asset(
    group_name=GROUP,
    kinds={"polars"},
    code_version=f"search-2-{templates_hash(*search.TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def search_traces(
    context: dg.AssetExecutionContext,
    config: SearchConfig,
    engine: GenerationEngine,
    math_seeds: pl.DataFrame,
    reasoning_tasks: pl.DataFrame,
) -> dg.MaterializeResult:
    """Verified CoT found by MCTS over reasoning steps, compared with plain sampling."""
    chosen = (
        math_seeds.sort("id").head(config.max_math_problems).to_dicts() if math_seeds.height else []
    )
    chosen += search.search_candidates(reasoning_tasks.to_dicts(), config.max_task_problems)
    problems = tasks.problems_from_rows(chosen)
    default = search.SearchSettings()
    settings = search.SearchSettings(
        iterations=config.iterations,
        max_children=config.max_children,
        max_depth=config.max_depth,
        exploration=config.exploration,
        root_rollout=config.root_rollout,
        step_sampling=SamplingParams(
            0.9, max_tokens=config.step_max_tokens, stop=default.step_sampling.stop
        ),
        rollout_sampling=SamplingParams(0.7, max_tokens=config.rollout_max_tokens),
        forcing=cot.AnswerForcing() if config.force_answer else None,
        seed=config.seed,
    )
    cached = engine.engine_for(search.STAGE)
    began = time.perf_counter()
    results = search.search(problems, cached, settings)
    elapsed = time.perf_counter() - began
    rows = search.search_rows(results, cached.identity, row_context(context), settings)
    frame = rows_to_frame(rows, SEARCH_SCHEMA)
    tokens = sum(r.tokens for r in results)
    solved = sum(1 for r in results if r.paths)
    extra = {
        **_model_metadata(cached, engine, frame.height, elapsed),
        "problems": len(problems),
        "solved_problems": solved,
        "search_tokens": tokens,
        "verified_rows_per_1k_tokens_mcts": _per_1k(frame.height, tokens),
        "failed_requests": sum(r.failed_requests for r in results),
        "forced_answers": sum(r.forced_answers for r in results),
        "forced_paths": sum(p.forced for r in results for p in r.paths),
        "template_hashes": _hashes(*search.TEMPLATES),
    }
    if config.compare_sampling and problems:
        baseline = search.sample_at_budget(
            problems,
            engine.engine_for(f"{search.STAGE}_sampling_baseline"),
            [max(r.tokens, 1) for r in results],
            settings.rollout_sampling,
            seed=config.seed,
            forcing=settings.forcing,
        )
        extra |= {
            "sampling_tokens": baseline.tokens,
            "sampling_samples": baseline.samples,
            "sampling_verified_samples": baseline.verified_samples,
            "sampling_solved_problems": baseline.solved_problems,
            # one row per solved problem on both sides (search keeps max_paths=1 per problem)
            "verified_rows_per_1k_tokens_sampling": _per_1k(
                baseline.solved_problems, baseline.tokens
            ),
        }
    preview = ["task_type", "predicted", "gold", "search_steps", "response"]
    return frame_output(frame, preview, extra)


@dg.asset_check(
    asset=search_traces, blocking=True, description="Every search row reached the gold answer."
)
def search_traces_verified(search_traces: pl.DataFrame) -> dg.AssetCheckResult:
    unverified = 0
    for row in search_traces.iter_rows(named=True):
        names = {v["name"]: v["passed"] for v in row["verdicts"]}
        verified = names.get("math_verify") or names.get("reasoning_gym_score")
        unverified += not (names.get("search") and verified)
    return dg.AssetCheckResult(
        passed=unverified == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows": search_traces.height, "unverified": unverified},
    )
