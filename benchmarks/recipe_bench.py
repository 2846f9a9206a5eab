"""The new kinds on the default model: rows/s, pass rates, and the three comparisons.

Runs the synth_lib stages directly (no Dagster) on real seeds with one engine, no
response cache, so every figure is a fresh generation:
- instructions and dialogues (with personas): rows/s, pass rate, rejection reasons;
- persona diversity gain: the same seeds and sampling seeds with and without personas;
- code explanations against sandbox-run traces: rows/s, pass rate;
- MCTS vs plain sampling at the same token budget: verified rows per 1,000 tokens;
- stratification: round one (instructions on the first seeds by id), then a second round
  of the same budget allocated by coverage vs spread uniformly: coverage entropy after.

    python benchmarks/recipe_bench.py --seeds 8 --problems 8 --budget 6
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from synth_lib.code.execution_traces import trace
from synth_lib.code.explanations import explain_code
from synth_lib.curation.anchor_filter import MiniLMEmbedder, embed
from synth_lib.curation.stratify import coverage_entropy, entropy_after, plan_coverage
from synth_lib.engines.base import SamplingParams
from synth_lib.engines.factory import build_engine, resolve_model_dir
from synth_lib.provenance.schema import RowContext, make_row
from synth_lib.reasoning.search import SearchSettings, sample_at_budget, search
from synth_lib.reasoning.seeding import stable_seed
from synth_lib.reasoning.tasks import problems_from_rows, reasoning_gym_rows
from synth_lib.sandbox.host import Sandbox, SandboxLimits
from synth_lib.seeds.reference import reference_passages
from synth_lib.seeds.stdlib_code import stdlib_functions
from synth_lib.text.dialogues import generate_dialogues
from synth_lib.text.instructions import InstructionSettings, generate_instructions, persona_probe
from synth_lib.text.personas import load_personas

CTX = RowContext("bench")


def _seed_rows(raw, stage: str) -> list[dict]:
    return sorted(
        (make_row(stage=stage, payload=r.payload, ctx=CTX, source=r.source) for r in raw),
        key=lambda row: row["id"],
    )


def _rate(rows) -> float:
    return round(sum(r["accepted"] for r in rows) / len(rows), 4) if rows else 0.0


def _timed(fn, *args, **kwargs):
    began = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - began
    print(f"{fn.__name__}: {seconds:.1f}s", file=sys.stderr, flush=True)
    return out, seconds


def _rows_of(name, outcome, seconds) -> dict:
    return {
        "stage": name,
        "rows": len(outcome.rows),
        "rows_per_s": round(len(outcome.rows) / seconds, 3),
        "seconds": round(seconds, 1),
        "pass_rate": _rate(outcome.rows),
        "rejections": dict(outcome.rejection_reasons),
    }


def _accepted_vectors(rows, embedder, accepted_only: bool) -> np.ndarray:
    texts = [
        f"{r['prompt']}\n\n{r['response']}" for r in rows if r["accepted"] or not accepted_only
    ]
    return embed(embedder, texts) if texts else np.zeros((0, 384), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=".synth/models")
    parser.add_argument("--seeds", type=int, default=8, help="text seeds per stage")
    parser.add_argument("--functions", type=int, default=4, help="code seeds to explain")
    parser.add_argument("--problems", type=int, default=8, help="reasoning problems for MCTS")
    parser.add_argument("--budget", type=int, default=6, help="second-round rows (coverage)")
    parser.add_argument("--k", type=int, default=6, help="clusters")
    parser.add_argument("--pool", type=int, default=64, help="text seeds clustered")
    parser.add_argument("--out", default="", help="write the figures as JSON here too")
    parser.add_argument("--parts", default="instructions,persona,dialogues,code,search,coverage",
                        help="comma-separated subset of the parts to run")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--instruction-tokens", type=int, default=192, help="instruction budget")
    args = parser.parse_args()

    model_dir = resolve_model_dir("", args.models_dir)
    engine = build_engine("transformers", model_dir=model_dir, batch_size=16, threads=args.threads)
    parts = set(args.parts.split(","))
    print(f"model: {engine.identity}")
    personas, embedder = load_personas(), MiniLMEmbedder()
    texts = _seed_rows(reference_passages(), "text_seeds")[: args.pool]
    seeds = texts[: args.seeds]
    report: dict = {"model": f"{engine.identity.model}@{engine.identity.revision[:12]}"}

    if "persona" in parts:
        settings = InstructionSettings(sampling=SamplingParams(max_tokens=args.instruction_tokens))
        gain, s = _timed(
            persona_probe, seeds, engine, personas, embedder, variants=2, settings=settings
        )
        report["persona_diversity"] = {**gain, "seconds": round(s, 1)}
        print(json.dumps(report["persona_diversity"]), file=sys.stderr, flush=True)
    if parts & {"instructions", "coverage"}:
        instructions, s = _timed(generate_instructions, seeds, engine, CTX, personas=personas)
        report["instructions"] = _rows_of("instructions", instructions, s)
        report["instructions"]["evolution_failures"] = dict(instructions.evolution_failures)
    if "dialogues" in parts:
        dialogues, s = _timed(generate_dialogues, seeds, engine, CTX, embedder, personas=personas)
        report["dialogues"] = _rows_of("dialogues", dialogues, s)
        report["dialogues"]["turns"] = dict(dialogues.turns)
    if "code" in parts:
        _code_part(report, engine, args.functions)
    if "search" in parts:
        _search_part(report, engine, args.problems)
    if "coverage" in parts:
        _coverage_part(report, engine, embedder, personas, texts, instructions, args)
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


def _code_part(report: dict, engine, functions: int) -> None:
    code = _seed_rows(stdlib_functions(), "code_seeds")
    with Sandbox(SandboxLimits(), mode="bwrap") as box:
        traces = trace(code, box, CTX, per_function=4).rows
    traced = {t["function"] for t in traces}
    chosen = [c for c in code if c["name"] in traced][:functions]
    explained, s = _timed(explain_code, chosen, traces, engine, CTX)
    report["code_explanations"] = _rows_of("code_explanations", explained, s)


def _search_part(report: dict, engine, n_problems: int) -> None:
    tasks = reasoning_gym_rows(["basic_arithmetic", "chain_sum"], ["easy"], n_problems // 2, CTX)
    problems = problems_from_rows(tasks)
    results, s = _timed(search, problems, engine, SearchSettings(iterations=6))
    tokens = sum(r.tokens for r in results)
    solved = sum(1 for r in results if r.paths)
    baseline = sample_at_budget(problems, engine, [max(r.tokens, 1) for r in results],
                                SearchSettings().rollout_sampling)  # fmt: skip
    report["mcts_vs_sampling"] = {
        "problems": len(problems),
        "mcts_tokens": tokens,
        "mcts_solved": solved,
        "mcts_verified_rows_per_1k_tokens": round(1000 * solved / max(tokens, 1), 4),
        "mcts_seconds": round(s, 1),
        "sampling_tokens": baseline.tokens,
        "sampling_samples": baseline.samples,
        "sampling_verified_samples": baseline.verified_samples,
        "sampling_solved": baseline.solved_problems,
        "sampling_verified_rows_per_1k_tokens": round(
            1000 * baseline.solved_problems / max(baseline.tokens, 1), 4
        ),
    }


def _coverage_part(report: dict, engine, embedder, personas, texts, instructions, args) -> None:
    """Round one = the instructions above; round two at an equal budget, two ways."""
    seed_vectors = embed(embedder, [t["text"] for t in texts])
    for accepted_only in (True, False):
        round_one = _accepted_vectors(instructions.rows, embedder, accepted_only)
        plan = plan_coverage(seed_vectors, round_one, args.k, args.budget)
        chosen_ids = [texts[i]["id"] for ids in plan.exemplar_indices for i in ids]
        stratified = [t for t in texts if t["id"] in chosen_ids]
        ranked = sorted(texts, key=lambda t: stable_seed(0, "uniform", t["id"]))
        uniform = ranked[: len(stratified)]
        after = {}
        for name, picked in (("stratified", stratified), ("uniform", uniform)):
            rows = generate_instructions(picked, engine, CTX, personas=personas).rows
            vectors = _accepted_vectors(rows, embedder, accepted_only)
            after[name] = entropy_after(plan.counts, vectors, plan.centroids)
            after[f"{name}_clusters"] = dict(Counter(int(plan.seed_labels[texts.index(p)])
                                                     for p in picked))  # fmt: skip
        key = "coverage_accepted_rows" if accepted_only else "coverage_all_complete_rows"
        report[key] = {
            "k": plan.k,
            "budget": len(stratified),
            "entropy_before": round(coverage_entropy(plan.counts), 4),
            "entropy_after_stratified": after["stratified"],
            "entropy_after_uniform": after["uniform"],
            "planned": plan.entropies(),
            "allocation": plan.allocation.tolist(),
            "stratified_seed_clusters": after["stratified_clusters"],
            "uniform_seed_clusters": after["uniform_clusters"],
        }


if __name__ == "__main__":
    main()
