"""Code assets: problem statements, verified solutions, execution traces, explanations."""

import random
import time

import dagster as dg
import polars as pl
from pydantic import Field

from resources.engine import GenerationEngine
from resources.sandbox import CodeSandbox
from synth_assets.common import GPU_STEP, frame_output, generation_metadata, row_context
from synth_assets.partitions import SHARDED
from synth_lib.code.execution_traces import TEMPLATE as TRACE_TEMPLATE
from synth_lib.code.execution_traces import functions_for_shard, recheck, trace
from synth_lib.code.explanations import STAGE as EXPLANATION_STAGE
from synth_lib.code.explanations import TEMPLATES as EXPLANATION_TEMPLATES
from synth_lib.code.explanations import ExplanationSettings, choose_functions, explain_code
from synth_lib.code.verified_code import (
    PROBLEM_STAGE,
    STAGE,
    TEMPLATES,
    problem_rejections,
    verify_code,
    write_problems,
)
from synth_lib.engines.base import SamplingParams
from synth_lib.prompts import load_template, templates_hash
from synth_lib.provenance.schema import rows_to_frame
from synth_lib.reporting import counts_table
from synth_lib.seeds.sharding import STDLIB, ShardKey, ShardKeyError
from synth_lib.seeds.stdlib_code import stdlib_functions

PROBLEM_SCHEMA = {"problem": pl.Utf8, "function": pl.Utf8, "accepted": pl.Boolean}
CODE_SCHEMA = {
    "prompt": pl.Utf8,
    "response": pl.Utf8,
    "tests": pl.Utf8,
    "function": pl.Utf8,
    "candidate": pl.Int64,
    "repaired": pl.Boolean,
    "accepted": pl.Boolean,
    "reject_reason": pl.Utf8,
    "reject_detail": pl.Utf8,
    "sandbox_mode": pl.Utf8,
}
RECHECK_SAMPLE = 25
TRACE_SCHEMA = {
    "prompt": pl.Utf8,
    "response": pl.Utf8,
    "expression": pl.Utf8,
    "function": pl.Utf8,
    "outcome": pl.Utf8,
}


class CodeProblemsConfig(dg.Config):
    """How many code seeds become problems, and how to sample the statements."""

    max_seeds: int = Field(
        default=2, description="Code seeds per shard to write problems for (0: all)."
    )
    temperature: float = Field(default=0.7, description="Sampling temperature.")
    max_tokens: int = Field(default=160, description="Completion budget per problem statement.")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


class VerifiedCodeConfig(dg.Config):
    """Candidates per problem and how to sample them (repairs use the same settings)."""

    candidates: int = Field(default=2, description="Candidate solutions per problem (N).")
    temperature: float = Field(default=0.8, description="Sampling temperature.")
    max_tokens: int = Field(default=256, description="Completion budget per candidate/repair.")
    seed: int = Field(default=0, description="Base sampling seed; candidate k uses seed + k.")


class TracesConfig(dg.Config):
    """How many generated inputs per stdlib function, and their seed."""

    per_function: int = Field(
        default=2,
        description="Generated calls per traced function (20 made ~540 traces a shard, which "
        "crowded every model-written row out of the 1:1 mix).",
    )
    seed: int = Field(default=0, description="Input-generator seed.")
    calls_per_process: int = Field(default=200, description="Calls batched per sandbox process.")


@dg.asset(
    group_name="code",
    kinds={"polars"},
    code_version=f"code-problems-1-{load_template(TEMPLATES[0]).hash[:12]}",
    **SHARDED,
    **GPU_STEP,
)
def code_problems(
    context: dg.AssetExecutionContext,
    config: CodeProblemsConfig,
    engine: GenerationEngine,
    code_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """A programming problem per stdlib function, written by the engine (Llama 3 step 1)."""
    seeds = code_seeds.sort("id")
    if config.max_seeds:
        seeds = seeds.head(config.max_seeds)
    cached = engine.engine_for(PROBLEM_STAGE)
    sampling = SamplingParams(config.temperature, max_tokens=config.max_tokens)
    rows = write_problems(
        seeds.to_dicts(), cached, row_context(context), sampling=sampling, seed=config.seed
    )
    frame = rows_to_frame(rows, PROBLEM_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rejection_reasons": dg.MetadataValue.md(counts_table(problem_rejections(rows))),
    }
    return frame_output(frame, ["function", "accepted", "problem", "id"], extra)


@dg.multi_asset(
    group_name="code",
    outs={
        "verified_code": dg.AssetOut(
            kinds={"polars"},
            description="Solutions whose own unit tests passed in the sandbox, with the tests.",
        ),
        "verified_code_rejects": dg.AssetOut(
            kinds={"polars"},
            description="Every candidate that did not pass, with all its verdicts and reason.",
        ),
    },
    code_version=f"verified-code-1-{templates_hash(*TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def verified_code(
    context: dg.AssetExecutionContext,
    config: VerifiedCodeConfig,
    engine: GenerationEngine,
    sandbox: CodeSandbox,
    code_problems: pl.DataFrame,
):
    """Candidates + tests → compile/ruff → sandbox → one repair each; only passes are kept."""
    box = sandbox.get()
    cached = engine.engine_for(STAGE)
    outcome = verify_code(
        code_problems.sort("id").to_dicts(),
        cached,
        box,
        row_context(context),
        candidates=config.candidates,
        sampling=SamplingParams(config.temperature, max_tokens=config.max_tokens),
        seed=config.seed,
    )
    meta = outcome.metadata
    if cached.identity.is_smoke_model:
        context.log.warning("smoke model: candidates are noise, expect (almost) no passes")
    extra = {
        **generation_metadata(cached, meta["kept"], engine.prices()),
        **{k: v for k, v in meta.items() if not isinstance(v, dict)},
        "final_verdicts": dg.MetadataValue.md(counts_table(meta["final_verdicts"], "verdict")),
        "first_attempt_verdicts": dg.MetadataValue.json(meta["first_attempt_verdicts"]),
        "repair_verdicts": dg.MetadataValue.json(meta["repair_verdicts"]),
        "problem_rejections": dg.MetadataValue.md(counts_table(meta["problem_rejections"])),
        "rejection_reasons": dg.MetadataValue.md(counts_table(meta["rejection_reasons"])),
        "template_hashes": dg.MetadataValue.json({n: load_template(n).hash for n in TEMPLATES}),
    }
    kept = rows_to_frame(outcome.rows, CODE_SCHEMA)
    rejected = rows_to_frame(outcome.rejected, CODE_SCHEMA)
    yield frame_output(kept, ["function", "repaired", "response", "tests"], extra, "verified_code")
    yield frame_output(
        rejected,
        ["function", "reject_reason", "response", "id"],
        {"reasons": dg.MetadataValue.md(counts_table(meta["final_verdicts"], "verdict"))},
        "verified_code_rejects",
    )


def _owns_unlinked(shard: str) -> bool:
    """The first stdlib shard traces the catalogue functions that have no code seed."""
    try:
        key = ShardKey.parse(shard)
    except ShardKeyError:
        return False
    return key.origin == STDLIB and key.index == 0


@dg.asset(
    group_name="code",
    kinds={"polars"},
    code_version=f"execution-traces-1-{load_template(TRACE_TEMPLATE).hash[:12]}",
    **SHARDED,
)
def execution_traces(
    context: dg.AssetExecutionContext,
    config: TracesConfig,
    sandbox: CodeSandbox,
    code_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Stdlib calls on generated inputs, run in the sandbox: input → output pairs, no model."""
    seeds = code_seeds.to_dicts()
    functions = functions_for_shard(
        seeds,
        owns_unlinked=_owns_unlinked(context.partition_key),
        seed_names=(seed.payload["name"] for seed in stdlib_functions()),
    )
    outcome = trace(
        seeds,
        sandbox.get(),
        row_context(context),
        functions=functions,
        per_function=config.per_function,
        seed=config.seed,
        calls_per_process=config.calls_per_process,
    )
    meta = outcome.metadata
    extra = {
        **{k: v for k, v in meta.items() if not isinstance(v, dict)},
        "rejected": dg.MetadataValue.md(counts_table(meta["rejected"])),
        "sandbox_verdicts": dg.MetadataValue.json(meta["sandbox_verdicts"]),
    }
    frame = rows_to_frame(outcome.rows, TRACE_SCHEMA)
    return frame_output(frame, ["expression", "response", "outcome"], extra)


@dg.asset_check(
    asset="verified_code",
    blocking=True,
    description="Every kept solution's last test run passed in the sandbox.",
)
def verified_code_all_tested(verified_code: pl.DataFrame) -> dg.AssetCheckResult:
    untested = 0
    for verdicts in verified_code.get_column("verdicts").to_list():
        tests = [v for v in verdicts if v["name"] in ("tests", "repair_tests")]
        untested += not tests or not tests[-1]["passed"]
    return dg.AssetCheckResult(
        passed=untested == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows": verified_code.height, "untested": untested},
    )


@dg.asset_check(
    asset="verified_code",
    description="Kept solutions were verified under bubblewrap, not the weaker rlimit_only mode.",
)
def verified_code_isolated(verified_code: pl.DataFrame) -> dg.AssetCheckResult:
    weak = verified_code.filter(pl.col("sandbox_mode") != "bwrap").height
    return dg.AssetCheckResult(
        passed=weak == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows_not_under_bwrap": weak},
    )


@dg.asset_check(
    asset=execution_traces,
    blocking=True,
    description="A random sample of traces, re-run in a fresh sandbox, gives the same answers.",
)
def execution_traces_reproduce(
    execution_traces: pl.DataFrame, sandbox: CodeSandbox
) -> dg.AssetCheckResult:
    rows = execution_traces.to_dicts()
    sample = random.Random(0).sample(rows, min(RECHECK_SAMPLE, len(rows)))
    mismatched = recheck(sample, sandbox.get())
    return dg.AssetCheckResult(
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rechecked": len(sample),
            "mismatched": len(mismatched),
            "examples": dg.MetadataValue.json(mismatched[:5]),
        },
    )


EXPLANATION_SCHEMA = {
    "prompt": pl.Utf8,
    "response": pl.Utf8,
    "function": pl.Utf8,
    "expressions": pl.List(pl.Utf8),
    "expected": pl.List(pl.Utf8),
    "predicted": pl.List(pl.Utf8),
    "accepted": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}


class ExplanationsConfig(dg.Config):
    """How many traced functions per shard get explained, and how each is verified."""

    max_functions: int = Field(
        default=3,
        description="Traced code seeds per shard (0: all), the easiest to explain and predict "
        "first (short sources, short value results).",
    )
    traces_per_function: int = Field(
        default=1, description="Sandbox-traced calls the explanation must let the model predict."
    )
    temperature: float = Field(default=0.7, description="Sampling temperature of explanations.")
    max_tokens: int = Field(default=256, description="Completion budget of an explanation.")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


@dg.asset(
    group_name="code",
    kinds={"polars"},
    code_version=f"code-explanations-2-{templates_hash(*EXPLANATION_TEMPLATES)}",
    **SHARDED,
    **GPU_STEP,
)
def code_explanations(
    context: dg.AssetExecutionContext,
    config: ExplanationsConfig,
    engine: GenerationEngine,
    code_seeds: pl.DataFrame,
    execution_traces: pl.DataFrame,
) -> dg.MaterializeResult:
    """Llama 3 code-to-text: step-by-step explanations that must predict a sandboxed call."""
    traced = set(execution_traces.get_column("function")) if execution_traces.height else set()
    traces = execution_traces.to_dicts()
    seeds = choose_functions(code_seeds.to_dicts(), traces, config.max_functions)
    cached = engine.engine_for(EXPLANATION_STAGE)
    began = time.perf_counter()
    outcome = explain_code(
        seeds,
        traces,
        cached,
        row_context(context),
        ExplanationSettings(
            sampling=SamplingParams(config.temperature, max_tokens=config.max_tokens),
            seed=config.seed,
            traces_per_function=config.traces_per_function,
        ),
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(outcome.rows, EXPLANATION_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "pass_rate": round(accepted / frame.height, 4) if frame.height else 0.0,
        "traced_functions": len(traced),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "lost": dg.MetadataValue.json(dict(outcome.lost)),
        "template_hashes": dg.MetadataValue.json(
            {n: load_template(n).hash for n in EXPLANATION_TEMPLATES}
        ),
    }
    return frame_output(frame, ["function", "accepted", "predicted", "response"], extra)


@dg.asset_check(
    asset=code_explanations,
    blocking=True,
    description="Every accepted explanation predicted its traced calls' real results.",
)
def code_explanations_predict_execution(code_explanations: pl.DataFrame) -> dg.AssetCheckResult:
    unverified = 0
    for row in code_explanations.filter(pl.col("accepted")).iter_rows(named=True):
        checks = [v for v in row["verdicts"] if v["name"] == "predicts_execution"]
        unverified += not checks or not all(v["passed"] for v in checks)
    return dg.AssetCheckResult(
        passed=unverified == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"accepted_without_verified_prediction": unverified},
    )
