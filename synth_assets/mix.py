"""`training_mix`: real and synthetic rows at a set ratio, written as verified shards."""

import dagster as dg
import polars as pl
from pydantic import Field

from resources.storage import SynthStorage
from synth_assets.common import frame_output
from synth_assets.partitions import SHARDED
from synth_lib.curation.pii_rescan import rescan_generated
from synth_lib.mix.shards import (
    ManifestError,
    accepted_only,
    build_mix,
    to_mix_schema,
    verify_shards,
    write_shards,
)
from synth_lib.provenance.rollback import active_entries, drop_rolled_back, removed_by
from synth_lib.reasoning.debate import drop_rejected
from synth_lib.reporting import counts_table

# reasoning-gym problems are seeds too (a program wrote them, no model): without them the
# reasoning shards would have no real rows and the 1:1 ratio would leave their traces out
REAL_INPUTS = {
    "text_seeds": "text",
    "code_seeds": "code",
    "math_seeds": "math",
    "reasoning_tasks": "reasoning_task",
}
SYNTHETIC_INPUTS = {
    "rephrasings": "rephrasing",
    "cot_traces": "reasoning",
    "verified_code": "code_solution",
    "execution_traces": "execution_trace",
    "preference_pairs": "preference",
    "instructions": "instruction",
    "dialogues": "dialogue",
    "code_explanations": "code_explanation",
    "search_traces": "reasoning",
}


class MixConfig(dg.Config):
    """Mix ratio, shuffle seed and shard size."""

    real_per_synthetic: float = Field(
        default=1.0, description="Real rows per synthetic row (WRAP uses 1:1)."
    )
    seed: int = Field(
        default=0, description="Shuffle and sampling seed (recorded in the manifest)."
    )
    rows_per_shard: int = Field(default=5000, description="Rows per Parquet shard.")
    filter_quality: bool = Field(
        default=True, description="Leave out synthetic rows whose `quality_scores` verdict failed."
    )


def _shard_dir(storage: SynthStorage, shard: str):
    """Where one seed shard's mix files and manifest live."""
    return storage.stage_dir(f"training_mix_shards/{shard}")


def _composition(frame: pl.DataFrame, column: pl.Expr) -> dict[str, int]:
    if frame.is_empty():
        return {}
    counts = frame.group_by(column.alias("key")).len()
    return {str(k): int(v) for k, v in counts.iter_rows()}


@dg.asset(
    group_name="mix",
    kinds={"polars", "parquet"},
    code_version="mix-2",
    **SHARDED,
    ins={
        name: dg.AssetIn()
        for name in [*REAL_INPUTS, *SYNTHETIC_INPUTS, "debate_verdicts", "quality_scores"]
    },
    deps=["rollbacks"],
)
def training_mix(
    context: dg.AssetExecutionContext,
    config: MixConfig,
    storage: SynthStorage,
    **inputs: pl.DataFrame,
) -> dg.MaterializeResult:
    """A shard's accepted synthetic rows plus its real rows at the configured ratio, shuffled."""
    quality = inputs.pop("quality_scores")
    real = pl.concat([to_mix_schema(inputs[n], kind) for n, kind in REAL_INPUTS.items()])
    candidates = pl.concat(
        [to_mix_schema(accepted_only(inputs[n]), kind) for n, kind in SYNTHETIC_INPUTS.items()]
    )
    synthetic, debated_out = drop_rejected(candidates, inputs["debate_verdicts"])
    failed_quality = quality.filter(~pl.col("quality_passed")).select("id")
    if config.filter_quality:
        synthetic = synthetic.join(failed_quality, on="id", how="anti")
    mix, plan = build_mix(real, synthetic, config.real_per_synthetic, config.seed)
    # rows of an active rollback and their descendants leave after sampling, so every other
    # row is exactly what it would have been (a rollback only subtracts)
    removals = removed_by(active_entries(storage.home), inputs.values())
    mix, rolled_back = drop_rolled_back(mix, removals)
    # generated text is re-scanned for PII after the rollback matched the rows' own ids
    mix, pii = rescan_generated(mix)
    target = _shard_dir(storage, context.partition_key)
    manifest = write_shards(
        mix,
        target,
        config.rows_per_shard,
        {
            "seed": config.seed,
            "real_per_synthetic": config.real_per_synthetic,
            "run_id": context.run.run_id,
        },
    )
    if plan.synthetic_taken == 0:
        context.log.warning(
            "no accepted synthetic rows: the mix is empty (see the synthetic stages' metadata)"
        )
    extra = {
        "real_rows": plan.real_taken,
        "synthetic_rows": plan.synthetic_taken,
        "real_available": plan.real_available,
        "synthetic_available": plan.synthetic_available,
        "removed_by_debate": debated_out.height,
        "removed_by_quality": failed_quality.height if config.filter_quality else 0,
        "removed_by_rollback": rolled_back.height,
        **pii.metadata(),
        "shuffle_seed": config.seed,
        "shards": len(manifest["shards"]),
        "manifest": dg.MetadataValue.path(str(target / "manifest.json")),
        "by_stage": dg.MetadataValue.md(counts_table(_composition(mix, pl.col("stage")), "stage")),
        "by_source": dg.MetadataValue.md(
            counts_table(
                _composition(
                    mix,
                    pl.coalesce(
                        pl.col("source").struct.field("dataset"),
                        pl.col("generator").struct.field("model"),
                    ),
                ),
                "source or model",
            )
        ),
    }
    return frame_output(mix, ["kind", "stage", "text", "id"], extra)


@dg.asset_check(asset=training_mix, blocking=True, description="Every row has full provenance.")
def training_mix_provenance_complete(training_mix: pl.DataFrame) -> dg.AssetCheckResult:
    problems = {
        "duplicate_ids": training_mix.height - training_mix.get_column("id").n_unique(),
        "missing_stage_or_run": training_mix.filter(
            pl.col("stage").is_null() | pl.col("run_id").is_null() | pl.col("created_at").is_null()
        ).height,
        "no_root_seed": training_mix.filter(pl.col("root_seed_ids").list.len() == 0).height,
        "synthetic_without_generator": training_mix.filter(
            pl.col("is_synthetic")
            & pl.col("generator").is_null()
            & (pl.col("parent_ids").list.len() == 0)
        ).height,
        "seed_without_source": training_mix.filter(
            (pl.col("parent_ids").list.len() == 0) & pl.col("source").is_null()
        ).height,
    }
    return dg.AssetCheckResult(
        passed=not any(problems.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={k: int(v) for k, v in problems.items()},
    )


@dg.asset_check(asset=training_mix, description="The mix contains no output of the smoke model.")
def training_mix_not_smoke_model(training_mix: pl.DataFrame) -> dg.AssetCheckResult:
    smoke = training_mix.filter(
        pl.col("generator").struct.field("is_smoke_model").fill_null(False)
    ).height
    return dg.AssetCheckResult(
        passed=smoke == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{smoke} rows come from the random-weight smoke model: noise, for pipeline checks "
            "only; configure SYNTH_MODEL for real data"
            if smoke
            else "no smoke-model rows"
        ),
        metadata={"smoke_model_rows": smoke},
    )


@dg.asset_check(asset=training_mix, blocking=True, description="Shards match their manifest.")
def training_mix_shards_verified(
    context: dg.AssetCheckExecutionContext, storage: SynthStorage
) -> dg.AssetCheckResult:
    try:
        manifest = verify_shards(_shard_dir(storage, context.op_execution_context.partition_key))
    except (ManifestError, FileNotFoundError) as exc:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(exc)
        )
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"shards": len(manifest["shards"]), "rows": manifest["total_rows"]},
    )
