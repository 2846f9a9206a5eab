"""The generate → gate → test → repair loop, driven by a scripted engine and the real sandbox."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest

from synth_lib.code.lint import lint_check, split_program
from synth_lib.code.verified_code import verify_code, write_problems
from synth_lib.engines.base import GenerationRequest, GenerationResult
from synth_lib.provenance.schema import RowContext, Source, make_row
from synth_lib.sandbox.host import Sandbox, SandboxLimits, SandboxResult, SandboxUnavailable
from tests import environment
from tests.scripted_engine import ScriptedEngine

CTX = RowContext(run_id="test-run")
PROBLEM = "Write a function `add(a, b)` that returns the sum of two integers a and b."
GOOD = "```python\ndef add(a, b):\n    return a + b\n```\n```python\nassert add(2, 3) == 5\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```\n```python\nassert add(2, 3) == 5\n```"
SYNTAX = "```python\ndef add(a, b:\n    return a + b\n```\n```python\nassert add(2, 3) == 5\n```"
UNDEFINED = (
    "```python\ndef add(a, b):\n    return a + c\n```\n```python\nassert add(1, 1) == 2\n```"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    try:
        box = Sandbox(SandboxLimits(timeout_s=5.0, memory_mb=256), concurrency=2)
    except SandboxUnavailable as exc:
        environment.missing("sandbox", f"bubblewrap sandbox unavailable: {exc}")
    with box:
        yield box


@pytest.fixture
def problems() -> list[dict]:
    seed = make_row(
        stage="code_seeds",
        payload={
            "text": "def add(a, b):\n    return a + b\n",
            "name": "demo.add",
            "module": "demo",
        },
        ctx=CTX,
        source=Source("demo", "demo.add", "PSF-2.0"),
    )
    engine = ScriptedEngine(lambda req: PROBLEM)
    rows = write_problems([seed], engine, CTX)
    assert rows[0]["accepted"] and rows[0]["root_seed_ids"] == [seed["id"]]
    return rows


def _is_repair(req: GenerationRequest) -> bool:
    return req.request_id.endswith(":repair")


def _by_candidate(first: Sequence[str], repair: Sequence[str]) -> ScriptedEngine:
    """Candidate k answers first[k]; its repair answers repair[k]."""
    return ScriptedEngine(lambda req: (repair if _is_repair(req) else first)[req.seed])


def test_correct_is_kept_and_a_failing_candidate_is_repaired_once(problems, sandbox) -> None:
    engine = _by_candidate([GOOD, WRONG], [GOOD, GOOD])
    out = verify_code(problems, engine, sandbox, CTX, candidates=2)
    meta = out.metadata
    assert (meta["kept"], meta["passed_first_try"], meta["pass_rate"]) == (2, 1, 1.0)
    assert (meta["repairs_attempted"], meta["repairs_succeeded"]) == (1, 1)
    assert meta["first_attempt_verdicts"] == {"passed": 1, "failed": 1}
    repairs = [r for r in engine.seen if _is_repair(r)]
    assert len(repairs) == 1
    assert "AssertionError" in repairs[0].prompt and "a - b" in repairs[0].prompt
    repaired = next(r for r in out.rows if r["repaired"])
    names = [(v["name"], v["passed"]) for v in repaired["verdicts"]]
    assert ("tests", False) in names and ("repair_tests", True) in names
    assert repaired["generator"]["template"] == "code_repair"
    assert all(r["accepted"] and "assert add(2, 3) == 5" in r["tests"] for r in out.rows)
    assert out.rows[0]["parent_ids"] == [problems[0]["id"]]
    assert out.rows[0]["root_seed_ids"] == problems[0]["root_seed_ids"]


def test_compile_and_lint_gates_reject_before_running(problems, sandbox) -> None:
    engine = _by_candidate([SYNTAX, UNDEFINED, WRONG], [SYNTAX, UNDEFINED, WRONG])
    out = verify_code(problems, engine, sandbox, CTX, candidates=3)
    meta = out.metadata
    assert meta["first_attempt_verdicts"] == {"compile_error": 1, "lint_error": 1, "failed": 1}
    assert meta["final_verdicts"] == meta["first_attempt_verdicts"]
    assert (meta["kept"], meta["repairs_attempted"], meta["repairs_succeeded"]) == (0, 3, 0)
    assert len([r for r in engine.seen if _is_repair(r)]) == 3  # once each, never twice
    reasons = {r["reject_reason"] for r in out.rejected}
    assert reasons == {"compile_error", "lint_error", "failed"}
    lint_row = next(r for r in out.rejected if r["reject_reason"] == "lint_error")
    assert any("F821" in (v["reason"] or "") for v in lint_row["verdicts"])


def test_noise_is_rejected_cleanly_with_counts(problems, sandbox) -> None:
    rng = random.Random(7)
    vocab = ["the", "```", "def", "(", ")", ":", "assert", "\n", "python", "==", "\x00", "{", "}"]
    nasty = ["```python\n" + "(" * 5000 + "\n```", "```python\nx = 1\n```", "```py\n\x00\n```"]

    def noise(req: GenerationRequest) -> str:
        if req.seed < len(nasty) and not _is_repair(req):
            return nasty[req.seed]
        return " ".join(rng.choice(vocab) for _ in range(60))

    out = verify_code(problems, ScriptedEngine(noise), sandbox, CTX, candidates=6)
    meta = out.metadata
    assert meta["kept"] == 0 and len(out.rejected) == 6
    assert sum(meta["final_verdicts"].values()) == 6
    assert meta["first_attempt_verdicts"].get("no_tests", 0) >= 1
    assert "passed" not in meta["final_verdicts"]


def test_engine_failures_are_not_repaired_but_truncation_is_checked(problems, sandbox) -> None:
    failed = GenerationResult("x", "", "error", error="HTTP 500")
    out = verify_code(problems, ScriptedEngine(lambda req: failed), sandbox, CTX, candidates=2)
    assert out.metadata["final_verdicts"] == {"generation_failed": 2}
    assert out.metadata["repairs_attempted"] == 0
    cut_after_code = GenerationResult("x", GOOD + "\nMore text that ran into the", "length")
    cut_in_code = GenerationResult("x", GOOD[:30], "length")
    engine = ScriptedEngine(lambda req: [cut_after_code, cut_in_code][req.seed])
    out = verify_code(problems, engine, sandbox, CTX, candidates=2)
    assert out.metadata["first_attempt_verdicts"] == {"passed": 1, "no_code_block": 1}


class _BrokenSandbox:
    mode = "bwrap"

    def run_many(self, codes: Sequence[str]) -> list[SandboxResult]:
        return [SandboxResult("sandbox_error", self.mode, reason="bwrap: boom") for _ in codes]


def test_sandbox_errors_are_never_scored_as_wrong_code(problems) -> None:
    out = verify_code(
        problems, ScriptedEngine(lambda req: WRONG), _BrokenSandbox(), CTX, candidates=2
    )
    meta = out.metadata
    assert meta["sandbox_errors"] == 2 and meta["repairs_attempted"] == 0
    assert meta["pass_rate"] == 0.0 and meta["final_verdicts"] == {"sandbox_error": 2}


def test_split_program_handles_one_block_two_blocks_and_no_tests() -> None:
    one = "```python\ndef f():\n    return 1\n\n\nassert f() == 1\n```"
    program, why = split_program(one)
    assert why == "" and program.solution.strip().startswith("def f")
    assert program.tests.strip() == "assert f() == 1"
    program, _ = split_program(GOOD)
    assert "return a + b" in program.solution and program.tests == "assert add(2, 3) == 5"
    assert split_program("```python\ndef f():\n    return 1\n```") == (None, "no_tests")
    assert split_program("no code at all") == (None, "no_code_block")
    tests_as_functions = (
        "```python\ndef g():\n    return 2\n\ndef test_g():\n    assert g() == 2\n```"
    )
    program, _ = split_program(tests_as_functions)
    assert program.tests.startswith("def test_g")


def test_lint_reports_the_first_fatal_finding_per_source() -> None:
    checks = lint_check(["x = 1\n", "print(undefined_thing)\n", "import os\n"])
    assert [c.passed for c in checks] == [True, False, True]  # unused import is style
    assert checks[1].reason.startswith("F821")


def test_a_solution_that_exits_before_its_tests_does_not_pass(problems, sandbox) -> None:
    cheat = (
        "```python\nimport sys\n\ndef add(a, b):\n    return a - b\n\n"
        "if __name__ == '__main__':\n    sys.exit(0)\n```\n"
        "```python\nassert add(2, 3) == 5\n```"
    )
    out = verify_code(problems, ScriptedEngine(lambda req: cheat), sandbox, CTX, candidates=1)
    assert out.metadata["final_verdicts"] == {"unsafe_solution": 1}
    assert out.metadata["rejection_reasons"] == {"unsafe_solution: exits the process": 1}
    reasons = [v["reason"] for v in out.rejected[0]["verdicts"] if v["name"] == "verifier_gate"]
    assert reasons == ["exits the process: uses `.exit`"]
