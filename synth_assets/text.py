"""`rephrasings`: WRAP-style rewrites of text seeds, every response kept with its verdicts."""

import time
from collections import Counter

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from resources.engine import GenerationEngine
from synth_assets.common import GPU_STEP, frame_output, generation_metadata, row_context
from synth_assets.partitions import SHARDED
from synth_lib.curation.anchor_filter import MiniLMEmbedder, embed
from synth_lib.curation.stratify import coverage_entropy, entropy_after
from synth_lib.engines.base import SamplingParams
from synth_lib.prompts import load_template, templates_hash
from synth_lib.provenance.schema import rows_to_frame
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.reporting import counts_table, histogram_png_markdown
from synth_lib.text.content_gate import ContentThresholds
from synth_lib.text.dialogues import STAGE as DIALOGUE_STAGE
from synth_lib.text.dialogues import TEMPLATE as DIALOGUE_TEMPLATE
from synth_lib.text.dialogues import (
    DialogueSettings,
    generate_dialogues,
    role_verdict,
    turn_sampling,
)
from synth_lib.text.evolution import OPERATORS as EVOLUTION_OPERATORS
from synth_lib.text.instructions import STAGE as INSTRUCTION_STAGE
from synth_lib.text.instructions import TEMPLATES as INSTRUCTION_TEMPLATES
from synth_lib.text.instructions import InstructionSettings, generate_instructions, persona_probe
from synth_lib.text.personas import DEFAULT_PERSONAS, load_personas
from synth_lib.text.rephrase import STAGE, STYLE_TEMPLATES, rephrase

PAYLOAD_SCHEMA = {
    "text": pl.Utf8,
    "style": pl.Utf8,
    "accepted": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}


class RephraseConfig(dg.Config):
    """Which seeds to rephrase, in which styles, and how to sample."""

    max_seeds: int = Field(default=4, description="Text seeds to rephrase per shard (0: all).")
    max_passage_chars: int = Field(
        default=700,
        description="Rephrase only passages up to this long (0: any): a 135M model rambles "
        "past its budget on long ones.",
    )
    styles: list[str] = Field(
        default=list(STYLE_TEMPLATES), description=f"Subset of {list(STYLE_TEMPLATES)}."
    )
    temperature: float = Field(default=0.7, description="Sampling temperature.")
    top_p: float = Field(default=0.95, description="Nucleus sampling mass.")
    max_tokens: int = Field(default=200, description="Completion budget; hitting it = truncated.")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")
    max_copy_jaccard: float = Field(
        default=0.7, description="Word 3-gram Jaccard with the seed above which a row is a copy."
    )
    min_content_support: float = Field(
        default=0.3,
        description="Content gate: least share of the rewrite's key terms found in its passage.",
    )
    min_content_coverage: float = Field(
        default=0.15,
        description="Content gate: least share of the passage's key terms the rewrite carries.",
    )


@dg.asset(
    group_name="synthetic",
    kinds={"polars"},
    code_version=f"rephrase-1-{templates_hash(*STYLE_TEMPLATES.values())}",
    **SHARDED,
    **GPU_STEP,
)
def rephrasings(
    context: dg.AssetExecutionContext,
    config: RephraseConfig,
    engine: GenerationEngine,
    text_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Rewrite seed passages in four styles; rejected outputs stay as rows with their reason."""
    seeds = text_seeds.sort("id")
    if config.max_passage_chars:
        seeds = seeds.filter(pl.col("text").str.len_chars() <= config.max_passage_chars)
    if config.max_seeds:
        seeds = seeds.head(config.max_seeds)
    cached = engine.engine_for(STAGE)
    began = time.perf_counter()
    outcome = rephrase(
        seeds.to_dicts(),
        cached,
        row_context(context),
        styles=config.styles,
        sampling=SamplingParams(config.temperature, config.top_p, config.max_tokens),
        seed=config.seed,
        max_copy_jaccard=config.max_copy_jaccard,
        content=ContentThresholds(config.min_content_support, config.min_content_coverage),
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(outcome.rows, PAYLOAD_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    lengths = frame.filter(pl.col("accepted")).get_column("text").str.len_chars().to_list()
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "rows_by_style": dg.MetadataValue.json(dict(outcome.requested_by_style)),
        "accepted_by_style": dg.MetadataValue.json(dict(outcome.accepted_by_style)),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "template_hashes": dg.MetadataValue.json(
            {name: load_template(name).hash for name in STYLE_TEMPLATES.values()}
        ),
        "accepted_length_histogram": dg.MetadataValue.md(
            histogram_png_markdown(lengths, "accepted rephrasing length", "characters")
        ),
    }
    return frame_output(frame, ["style", "accepted", "text", "id"], extra)


INSTRUCTION_SCHEMA = {
    "prompt": pl.Utf8,
    "response": pl.Utf8,
    "instruction_kind": pl.Utf8,
    "seed_instruction": pl.Utf8,
    "evolution": pl.List(pl.Utf8),
    "evol_depth": pl.Int64,
    "persona_id": pl.Utf8,
    "persona": pl.Utf8,
    "persona_set": pl.Utf8,
    "accepted": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}
DIALOGUE_SCHEMA = {
    "messages": pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8})),
    "turns": pl.Int64,
    "requested_turns": pl.Int64,
    "persona_id": pl.Utf8,
    "persona": pl.Utf8,
    "persona_set": pl.Utf8,
    "accepted": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}


class InstructionsConfig(dg.Config):
    """How many seeds per shard become instructions, how they evolve, and the judge's bar."""

    max_text_seeds: int = Field(default=1, description="Text seeds per shard (0: none).")
    max_code_seeds: int = Field(default=1, description="Code seeds per shard (0: none).")
    depth: int = Field(default=1, description="Evol-Instruct evolution steps per instruction.")
    operators: list[str] = Field(
        default=list(EVOLUTION_OPERATORS), description=f"Subset of {list(EVOLUTION_OPERATORS)}."
    )
    use_personas: bool = Field(default=True, description="Sample a persona per row.")
    personas: str = Field(default=DEFAULT_PERSONAS, description="Persona file (prompts folder).")
    persona_probe_variants: int = Field(
        default=1,
        description="Variants per seed in the with/without-persona diversity probe (0: off).",
    )
    temperature: float = Field(default=0.8, description="Sampling temperature.")
    max_tokens: int = Field(default=192, description="Completion budget of an instruction.")
    response_max_tokens: int = Field(default=192, description="Completion budget of a response.")
    min_judge_score: float = Field(default=6.0, description="Lowest accepted judge score (1-10).")
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


class DialoguesConfig(dg.Config):
    """How many seeds per shard become conversations, their length and the topic bar."""

    max_text_seeds: int = Field(default=1, description="Text seeds per shard (0: none).")
    max_code_seeds: int = Field(default=1, description="Code seeds per shard (0: none).")
    requested_turns: list[int] = Field(
        default=[2, 3], description="Exchanges to ask for; one is picked per row."
    )
    min_turns: int = Field(default=2, description="Fewest user+assistant exchanges accepted.")
    max_turns: int = Field(default=6, description="Most user+assistant exchanges accepted.")
    min_topic_cosine: float = Field(
        default=0.3, description="Lowest MiniLM cosine between conversation and seed."
    )
    use_personas: bool = Field(default=True, description="Sample a persona per row.")
    personas: str = Field(default=DEFAULT_PERSONAS, description="Persona file (prompts folder).")
    temperature: float = Field(default=0.3, description="Sampling temperature of every turn.")
    max_tokens: int = Field(default=48, description="Completion budget of a user question.")
    answer_max_tokens: int = Field(
        default=96, description="Completion budget of an assistant answer."
    )
    multi_paragraph_answers: bool = Field(
        default=False,
        description="Answers may run past a blank line (stop only at the next role label): "
        "for models that answer in paragraphs or with code blocks. The small default model "
        "runs on into unrelated text without the blank-line stop.",
    )
    seed: int = Field(default=0, description="Sampling seed (part of the cache key).")


def _grounding_seeds(
    text_seeds: pl.DataFrame, code_seeds: pl.DataFrame, n_text: int, n_code: int
) -> list[dict]:
    """The shard's first seeds by id: passages and code both ground instructions."""
    picked = [
        frame.sort("id").head(n).to_dicts()
        for frame, n in ((text_seeds, n_text), (code_seeds, n_code))
        if n and frame.height
    ]
    return [row for rows in picked for row in rows]


def _pass_rate(frame: pl.DataFrame) -> float:
    return round(float(frame.get_column("accepted").mean() or 0.0), 4) if frame.height else 0.0


@dg.asset(
    group_name="instructions",
    kinds={"polars"},
    code_version=f"instructions-1-{templates_hash(*INSTRUCTION_TEMPLATES, 'reasoning_score')}",
    **SHARDED,
    **GPU_STEP,
)
def instructions(
    context: dg.AssetExecutionContext,
    config: InstructionsConfig,
    engine: GenerationEngine,
    text_seeds: pl.DataFrame,
    code_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Instruction–response pairs grounded in seeds: written for a persona, evolved, judged."""
    seeds = _grounding_seeds(text_seeds, code_seeds, config.max_text_seeds, config.max_code_seeds)
    personas = load_personas(config.personas) if config.use_personas else None
    settings = InstructionSettings(
        sampling=SamplingParams(config.temperature, max_tokens=config.max_tokens),
        response_sampling=SamplingParams(config.temperature, max_tokens=config.response_max_tokens),
        seed=config.seed,
        depth=config.depth,
        operators=tuple(config.operators),
        min_judge_score=config.min_judge_score,
    )
    cached = engine.engine_for(INSTRUCTION_STAGE)
    began = time.perf_counter()
    outcome = generate_instructions(
        seeds, cached, row_context(context), personas=personas, settings=settings
    )
    elapsed = time.perf_counter() - began
    diversity: dict = {}
    if personas and config.persona_probe_variants and seeds:
        probe = engine.engine_for(f"{INSTRUCTION_STAGE}_persona_probe")
        diversity = persona_probe(
            seeds,
            probe,
            personas,
            MiniLMEmbedder(),
            variants=config.persona_probe_variants,
            settings=settings,
        )
    frame = rows_to_frame(outcome.rows, INSTRUCTION_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "pass_rate": _pass_rate(frame),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "lost_before_response": dg.MetadataValue.json(dict(outcome.lost_before_response)),
        "evolution_depths": dg.MetadataValue.json(dict(outcome.evolution_steps)),
        "evolution_failures": dg.MetadataValue.md(counts_table(outcome.evolution_failures)),
        "persona_set": personas.label if personas else "none",
        "persona_diversity": dg.MetadataValue.json(diversity),
        **{f"persona_{k}": v for k, v in diversity.items() if k.endswith("_gain") and v},
        "template_hashes": dg.MetadataValue.json(
            {name: load_template(name).hash for name in INSTRUCTION_TEMPLATES}
        ),
    }
    return frame_output(frame, ["instruction_kind", "evolution", "accepted", "prompt"], extra)


@dg.asset(
    group_name="instructions",
    kinds={"polars"},
    code_version=f"dialogues-2-{load_template(DIALOGUE_TEMPLATE).hash[:12]}",
    **SHARDED,
    **GPU_STEP,
)
def dialogues(
    context: dg.AssetExecutionContext,
    config: DialoguesConfig,
    engine: GenerationEngine,
    text_seeds: pl.DataFrame,
    code_seeds: pl.DataFrame,
) -> dg.MaterializeResult:
    """Multi-turn conversations grounded in seeds, as TRL `messages`, checked turn by turn."""
    seeds = _grounding_seeds(text_seeds, code_seeds, config.max_text_seeds, config.max_code_seeds)
    personas = load_personas(config.personas) if config.use_personas else None
    settings = DialogueSettings(
        question=turn_sampling(config.temperature, config.max_tokens),
        answer=turn_sampling(
            config.temperature, config.answer_max_tokens, config.multi_paragraph_answers
        ),
        seed=config.seed,
        min_turns=config.min_turns,
        max_turns=config.max_turns,
        requested_turns=tuple(config.requested_turns),
        min_topic_cosine=config.min_topic_cosine,
    )
    cached = engine.engine_for(DIALOGUE_STAGE)
    began = time.perf_counter()
    outcome = generate_dialogues(
        seeds, cached, row_context(context), MiniLMEmbedder(), personas=personas, settings=settings
    )
    elapsed = time.perf_counter() - began
    frame = rows_to_frame(outcome.rows, DIALOGUE_SCHEMA)
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    extra = {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "pass_rate": _pass_rate(frame),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "lost_without_an_exchange": dg.MetadataValue.json(dict(outcome.lost)),
        "tails_dropped": dg.MetadataValue.json(dict(outcome.tails_dropped)),
        "turns": dg.MetadataValue.json(dict(outcome.turns)),
        "persona_set": personas.label if personas else "none",
    }
    return frame_output(frame, ["turns", "accepted", "messages", "id"], extra)


@dg.asset_check(
    asset=dialogues,
    blocking=True,
    description="Accepted conversations alternate user/assistant and end with the assistant.",
)
def dialogues_roles_alternate(dialogues: pl.DataFrame) -> dg.AssetCheckResult:
    bad = [
        row["id"]
        for row in dialogues.filter(pl.col("accepted")).iter_rows(named=True)
        if not role_verdict(row["messages"]).passed
    ]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"accepted": int(dialogues.get_column("accepted").sum() or 0),
                  "bad_role_order": len(bad), "examples": dg.MetadataValue.json(bad[:5])},
    )  # fmt: skip


@dg.asset_check(
    asset=instructions,
    blocking=True,
    description="Every accepted instruction passed the judge and the cheap checks.",
)
def instructions_judged(instructions: pl.DataFrame) -> dg.AssetCheckResult:
    unjudged = 0
    for row in instructions.filter(pl.col("accepted")).iter_rows(named=True):
        gates = [v for v in row["verdicts"] if not v["name"].startswith("evolution_")]
        unjudged += not gates or gates[-1]["name"] != "judge" or not all(v["passed"] for v in gates)
    return dg.AssetCheckResult(
        passed=unjudged == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"unjudged_or_failed": unjudged},
    )


class StratifiedConfig(dg.Config):
    """The coverage-driven round: the budget comes from `coverage`; a uniform round of the same
    size can be generated beside it to measure the entropy gain."""

    measure_baseline: bool = Field(
        default=False,
        description="Also generate a uniform-random round of the same budget (the entropy gain "
        "at an equal budget; doubles the round's cost, so off in the small default run).",
    )
    use_personas: bool = Field(default=True, description="Sample a persona per row.")
    depth: int = Field(default=1, description="Evol-Instruct evolution steps per instruction.")
    seed: int = Field(default=0, description="Sampling seed; also picks the baseline's seeds.")


def _accepted_vectors(rows: list[dict], embedder) -> np.ndarray:
    texts = [f"{r['prompt']}\n\n{r['response']}" for r in rows if r["accepted"]]
    return embed(embedder, texts) if texts else np.zeros((0, 384), dtype=np.float32)


@dg.asset(group_name="instructions", kinds={"polars"}, code_version="stratified-1", **GPU_STEP)
def stratified_instructions(
    context: dg.AssetExecutionContext,
    config: StratifiedConfig,
    engine: GenerationEngine,
    coverage: pl.DataFrame,
    text_seeds: pl.LazyFrame,
) -> dg.MaterializeResult:
    """The next round of instructions, its budget allocated inversely to coverage: the
    exemplars of sparse clusters ground it. Entropy before/after vs a uniform round."""
    allocated = coverage.filter(pl.col("allocated") > 0)
    wanted = [i for ids in allocated.get_column("exemplar_ids").to_list() for i in ids]
    columns = ["id", "text", "root_seed_ids", "is_synthetic"]
    seeds = text_seeds.select(columns).collect() if wanted else pl.DataFrame()
    by_id = {row["id"]: row for row in seeds.to_dicts()}
    chosen = [by_id[i] for i in wanted if i in by_id]
    cluster_of = {i: c for c, ids in coverage.select("cluster", "exemplar_ids").iter_rows()
                  for i in ids}  # fmt: skip
    personas = load_personas() if config.use_personas else None
    settings = InstructionSettings(seed=config.seed, depth=config.depth)
    cached = engine.engine_for("stratified_instructions")
    began = time.perf_counter()
    outcome = generate_instructions(chosen, cached, row_context(context), personas=personas,
                                    settings=settings, stage="stratified_instructions")  # fmt: skip
    elapsed = time.perf_counter() - began
    for row in outcome.rows:
        row["cluster"] = cluster_of.get(row["parent_ids"][0])
    centroids = np.array(coverage.get_column("centroid").to_list(), dtype=np.float32)
    counts = coverage.get_column("synthetic_rows").to_numpy().astype(np.float64)
    embedder = MiniLMEmbedder()
    extra: dict = {
        "budget": len(chosen),
        "coverage_entropy_before": round(coverage_entropy(counts), 4),
        "coverage_entropy_after": entropy_after(counts, _accepted_vectors(outcome.rows, embedder),
                                                centroids),
    }  # fmt: skip
    if config.measure_baseline and chosen:
        ranked = sorted(by_id, key=lambda i: stable_seed(config.seed, "uniform", i))
        uniform = [by_id[i] for i in ranked[: len(chosen)]]
        base = generate_instructions(uniform, engine.engine_for("stratified_uniform_baseline"),
                                     row_context(context), personas=personas, settings=settings,
                                     stage="stratified_instructions")  # fmt: skip
        after = entropy_after(counts, _accepted_vectors(base.rows, embedder), centroids)
        extra |= {
            "coverage_entropy_after_uniform": after,
            "entropy_gain_vs_uniform": round(extra["coverage_entropy_after"] - after, 4),
            "uniform_accepted": sum(1 for r in base.rows if r["accepted"]),
        }
    frame = rows_to_frame(outcome.rows, {**INSTRUCTION_SCHEMA, "cluster": pl.Int64})
    accepted = int(frame.get_column("accepted").sum()) if frame.height else 0
    extra |= {
        **generation_metadata(cached, accepted, engine.prices()),
        "rows_per_s": round(frame.height / elapsed, 2) if elapsed else 0.0,
        "pass_rate": _pass_rate(frame),
        "rejection_reasons": dg.MetadataValue.md(counts_table(outcome.rejection_reasons)),
        "lost_before_response": dg.MetadataValue.json(dict(outcome.lost_before_response)),
        "rows_by_cluster": dg.MetadataValue.json(
            {str(k): v for k, v in Counter(r["cluster"] for r in outcome.rows).items()}
        ),
    }
    return frame_output(frame, ["cluster", "accepted", "prompt", "id"], extra)
