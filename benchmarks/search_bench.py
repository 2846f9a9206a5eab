"""MCTS vs plain sampling at equal tokens on the default model, over several seeds.

For each seed: MCTS on every problem, then plain sampling (the cot template) until each
problem has spent the tokens its search spent. Both sides keep one row per solved problem,
so "verified rows per 1,000 tokens" = 1000 * solved / tokens. Figures are per seed and the
median over seeds, overall and per task type.

    python benchmarks/search_bench.py --per-task 6 --gsm8k 4 --seeds 0,1,2 --threads 1
    python benchmarks/search_bench.py --no-force --no-root-rollout   # the search without both
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from synth_lib.engines.factory import build_engine, resolve_model_dir
from synth_lib.provenance.schema import RowContext, make_row
from synth_lib.reasoning.cot import AnswerForcing
from synth_lib.reasoning.search import SearchSettings, sample_at_budget, search
from synth_lib.reasoning.tasks import DEFAULT_TASKS, problems_from_rows, reasoning_gym_rows
from synth_lib.seeds.gsm8k import gsm8k_seeds

CTX = RowContext("bench")


def _problems(tasks: list[str], difficulty: str, per_task: int, gsm8k: int, gsm8k_path: str):
    rows = reasoning_gym_rows(tasks, [difficulty], per_task, CTX) if per_task else []
    if gsm8k:
        seeds, _ = gsm8k_seeds(gsm8k_path)
        rows += [make_row(stage="math_seeds", payload=s.payload, ctx=CTX, source=s.source)
                 for s in seeds[:gsm8k]]  # fmt: skip
    return problems_from_rows(rows)


def _per_1k(solved: int, tokens: int) -> float:
    return round(1000 * solved / tokens, 3) if tokens else 0.0


def _one_seed(problems, engine, settings: SearchSettings, seed: int) -> dict:
    settings = replace(settings, seed=seed)
    began = time.perf_counter()
    results = search(problems, engine, settings)
    mcts_s = time.perf_counter() - began
    budgets = [max(r.tokens, 1) for r in results]
    began = time.perf_counter()
    baseline = sample_at_budget(problems, engine, budgets, settings.rollout_sampling,
                                seed=seed, forcing=settings.forcing)  # fmt: skip
    sampling_s = time.perf_counter() - began
    by_task: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in results:
        cell = by_task[r.problem.task_type]
        cell["problems"] += 1
        cell["mcts_solved"] += bool(r.paths)
        cell["mcts_tokens"] += r.tokens
    for problem, solved in zip(problems, baseline.solved, strict=True):
        by_task[problem.task_type]["sampling_solved"] += solved
    tokens = sum(r.tokens for r in results)
    solved = sum(bool(r.paths) for r in results)
    return {
        "seed": seed,
        "mcts_tokens": tokens,
        "mcts_solved": solved,
        "mcts_requests": sum(r.requests for r in results),
        "mcts_forced_answers": sum(r.forced_answers for r in results),
        "mcts_forced_paths": sum(p.forced for r in results for p in r.paths),
        "mcts_per_1k": _per_1k(solved, tokens),
        "mcts_seconds": round(mcts_s, 1),
        "sampling_tokens": baseline.tokens,
        "sampling_solved": baseline.solved_problems,
        "sampling_samples": baseline.samples,
        "sampling_verified_samples": baseline.verified_samples,
        "sampling_per_1k": _per_1k(baseline.solved_problems, baseline.tokens),
        "sampling_seconds": round(sampling_s, 1),
        "by_task": {k: dict(v) for k, v in sorted(by_task.items())},
        "paths": [
            {
                "task": r.problem.task_type,
                "gold": r.problem.gold,
                "forced": p.forced,
                "text": p.text[:400],
            }
            for r in results
            for p in r.paths
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=".synth/models")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--difficulty", default="easy")
    parser.add_argument("--per-task", type=int, default=6, help="reasoning-gym problems per task")
    parser.add_argument("--gsm8k", type=int, default=4, help="GSM8K problems (first N)")
    parser.add_argument("--gsm8k-path", default=os.environ.get("SYNTH_GSM8K_PATH", ""))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=SearchSettings.iterations)
    parser.add_argument("--max-children", type=int, default=SearchSettings.max_children)
    parser.add_argument("--max-depth", type=int, default=SearchSettings.max_depth)
    parser.add_argument("--step-max-tokens", type=int, default=0, help="0: the default")
    parser.add_argument("--rollout-max-tokens", type=int, default=0, help="0: the default")
    parser.add_argument("--no-step-stop", action="store_true", help="no newline stop in steps")
    parser.add_argument("--no-force", action="store_true", help="no answer forcing (both sides)")
    parser.add_argument("--no-root-rollout", action="store_true", help="expand the root first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default="", help="write the figures as JSON here too")
    args = parser.parse_args()

    default = SearchSettings()
    step, rollout = default.step_sampling, default.rollout_sampling
    step = replace(step, max_tokens=args.step_max_tokens or step.max_tokens,
                   stop=() if args.no_step_stop else step.stop)  # fmt: skip
    rollout = replace(rollout, max_tokens=args.rollout_max_tokens or rollout.max_tokens)
    settings = replace(
        default,
        iterations=args.iterations,
        max_children=args.max_children,
        max_depth=args.max_depth,
        step_sampling=step,
        rollout_sampling=rollout,
        forcing=None if args.no_force else AnswerForcing(),
        root_rollout=not args.no_root_rollout,
    )
    problems = _problems(args.tasks.split(","), args.difficulty, args.per_task, args.gsm8k,
                         args.gsm8k_path)  # fmt: skip
    model_dir = resolve_model_dir("", args.models_dir)
    engine = build_engine("transformers", model_dir=model_dir, batch_size=16, threads=args.threads)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run = _one_seed(problems, engine, settings, seed)
        runs.append(run)
        brief = {k: v for k, v in run.items() if k not in ("paths", "by_task")}
        print(json.dumps(brief), file=sys.stderr, flush=True)
    keys = ("mcts_tokens", "mcts_solved", "mcts_per_1k", "sampling_tokens", "sampling_solved",
            "sampling_per_1k", "mcts_seconds", "sampling_seconds")  # fmt: skip
    median = {k: statistics.median(run[k] for run in runs) for k in keys}
    median["per_1k_ratio_mcts_over_sampling"] = (
        round(median["mcts_per_1k"] / median["sampling_per_1k"], 3)
        if median["sampling_per_1k"]
        else None
    )
    report = {
        "model": f"{engine.identity.model}@{engine.identity.revision[:20]}",
        "problems": len(problems),
        "settings": {
            "iterations": settings.iterations,
            "max_children": settings.max_children,
            "max_depth": settings.max_depth,
            "step": step.as_dict(),
            "rollout": rollout.as_dict(),
            "forcing": settings.forcing is not None,
            "root_rollout": settings.root_rollout,
        },
        "median": median,
        "runs": runs,
    }
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
