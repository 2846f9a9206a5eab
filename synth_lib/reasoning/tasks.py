"""Problems with a checkable answer: GSM8K seed rows and procedural reasoning-gym tasks.

reasoning-gym generators are deterministic given (task, difficulty level, seed), so a
generated problem is a seed like any human one: it gets a `Source` naming the generator
and the exact seed, and its own scorer decides correctness (exact match is not enough
for e.g. fraction simplification, where an unsimplified equal fraction is wrong).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import polars as pl

from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.reasoning.answers import answers_match

STAGE = "reasoning_tasks"
LICENSE = "Apache-2.0"
DIFFICULTY_LEVELS = {"easy": 0, "medium": 1, "hard": 2}
DEFAULT_TASKS = ("basic_arithmetic", "chain_sum", "leg_counting", "gcd", "lcm")
GSM8K_TASK = "gsm8k"
PAYLOAD_SCHEMA = {
    name: pl.Utf8 for name in ("question", "answer", "gold", "task_type", "difficulty", "metadata")
}


@dataclass(frozen=True)
class Problem:
    """One problem to solve: its seed row (the provenance parent) and how to check answers."""

    row: Mapping[str, Any]
    question: str
    gold: str
    task_type: str
    difficulty: str
    entry: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.row["id"])


def task_seed(task: str, difficulty: str, base_seed: int) -> int:
    """A stable generator seed per (task, difficulty) so cells never share problems."""
    return int(sha256_hex(f"{task}|{difficulty}|{base_seed}")[:8], 16)


def _dataset(task: str, difficulty: str, size: int, seed: int) -> Any:
    from reasoning_gym.coaching.base_curriculum import (
        DefaultCurriculumContext,
        RangeAttributeMode,
    )
    from reasoning_gym.factory import DATASETS, create_curriculum

    curriculum = create_curriculum(task)
    curriculum.set_global_level(DIFFICULTY_LEVELS[difficulty])
    config = curriculum.generate_configuration(
        {"seed": seed, "size": size},
        context=DefaultCurriculumContext(mode=RangeAttributeMode.UPPER_BOUND),
    )
    return DATASETS[task][0](config=config)


def reasoning_gym_rows(
    tasks: Sequence[str],
    difficulties: Sequence[str],
    per_cell: int,
    ctx: RowContext,
    base_seed: int = 0,
) -> list[dict[str, Any]]:
    """`per_cell` problems for every (task, difficulty), as seed rows with provenance."""
    unknown = [d for d in difficulties if d not in DIFFICULTY_LEVELS]
    if unknown:
        raise ValueError(f"unknown difficulties {unknown}; choose from {list(DIFFICULTY_LEVELS)}")
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for difficulty in difficulties:
            seed = task_seed(task, difficulty, base_seed)
            dataset = _dataset(task, difficulty, per_cell, seed)
            for index in range(per_cell):
                entry = dataset[index]
                payload = {
                    "question": entry["question"],
                    "answer": str(entry["answer"]),
                    "gold": str(entry["answer"]),
                    "task_type": task,
                    "difficulty": difficulty,
                    "metadata": json.dumps(entry["metadata"], sort_keys=True, default=str),
                }
                level = DIFFICULTY_LEVELS[difficulty]
                source = Source(
                    dataset=f"reasoning-gym/{task}",
                    location=f"seed={seed},level={level},index={index}",
                    license=LICENSE,
                )
                rows.append(make_row(stage=STAGE, payload=payload, ctx=ctx, source=source))
    return rows


def gsm8k_difficulty(solution: str) -> str:
    """Difficulty of a GSM8K problem from its worked solution's step count (lines before ####)."""
    steps = [line for line in solution.split("####")[0].splitlines() if line.strip()]
    if len(steps) <= 2:
        return "easy"
    return "medium" if len(steps) <= 4 else "hard"


def problems_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Problems from math-seed rows (question/answer/gold) or reasoning-task rows."""
    problems: list[Problem] = []
    for row in rows:
        task = row.get("task_type") or GSM8K_TASK
        entry = None
        if task != GSM8K_TASK:
            entry = {
                "question": row["question"],
                "answer": row["gold"],
                "metadata": json.loads(row.get("metadata") or "{}"),
            }
        difficulty = row.get("difficulty") or gsm8k_difficulty(row.get("answer") or "")
        problems.append(
            Problem(
                row=row,
                question=row["question"],
                gold=str(row["gold"]),
                task_type=task,
                difficulty=difficulty,
                entry=entry,
            )
        )
    return problems


@cache
def _scorer(task: str) -> Any:
    from reasoning_gym.factory import get_score_answer_fn

    return get_score_answer_fn(task)


def check_answer(problem: Problem, answer: str | None) -> tuple[bool, float, str]:
    """(passed, score, checker name): reasoning-gym's own scorer, else math equivalence."""
    if problem.entry is None:
        ok = answers_match(answer, problem.gold)
        return ok, float(ok), "math_verify"
    if answer is None:
        return False, 0.0, "reasoning_gym_score"
    try:
        score = float(_scorer(problem.task_type)(answer, dict(problem.entry)))
    except Exception:
        score = 0.0
    return score >= 1.0, score, "reasoning_gym_score"
