"""Candidates that game the verifier: each kind is rejected, with a reason naming what was caught.

The problem asks for `add(a, b)`; every gaming candidate carries the wrong solution
`a - b` (or tests that prove nothing), so "kept" would mean the verifier was fooled. All
responses go through `verify_responses`, the exact checks `verify_code` applies, in ONE
sandbox batch. A second batch switches the solution's static gate off, to show that the
run itself (trusted runner, separate candidate process, plain-data channel) still holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from synth_lib.code.lint import Program
from synth_lib.code.verified_code import ResponseCheck, verify_responses
from synth_lib.code.verifier import judge, prepare, reference_for
from synth_lib.sandbox.host import Sandbox, SandboxLimits, SandboxUnavailable

PROBLEM = "Write a function `add(a, b)` that returns the sum of two integers a and b."
GCD_PROBLEM = "Write a function `gcd(a, b)`: the greatest common divisor of two integers."
WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
OLD_MARKER = "synth-tests-completed-5d1c"


def response(solution: str, tests: str = TESTS) -> str:
    return f"```python\n{solution}```\n```python\n{tests}```\n"


# kind -> (solution, tests, expected outcome, words the reason must contain)
CONTROLS = {
    "honest_correct": (RIGHT, TESTS, "passed", "2 assertions ran"),
    "honest_correct_test_functions": (
        RIGHT,
        "def test_add():\n    assert add(2, 3) == 5\n",
        "passed",
        "1 assertions ran",
    ),
    "honest_correct_main_block": (
        RIGHT,
        "if __name__ == '__main__':\n    assert add(2, 3) == 5\n",
        "passed",
        "1 assertions ran",
    ),
    "honest_correct_raises": (
        "def add(a, b):\n    if a is None:\n        raise ValueError('a')\n    return a + b\n",
        "assert add(2, 3) == 5\ntry:\n    add(None, 1)\n    assert False\nexcept ValueError:\n"
        "    pass\n",
        "passed",
        "1 assertions ran",
    ),
    "honest_wrong": (WRONG, TESTS, "failed", "AssertionError: line 1 `assert add(2, 3) == 5`"),
}
ATTACKS = {
    "early_exit_after_marker": (
        f"import sys\n{WRONG}print({OLD_MARKER!r})\nsys.exit(0)\n",
        TESTS,
        "unsafe_solution",
        "exits the process",
    ),
    "os_exit_0": (
        f"import os\n{WRONG}print({OLD_MARKER!r}, flush=True)\nos._exit(0)\n",
        TESTS,
        "unsafe_solution",
        "exits the process",
    ),
    "exit_in_main_block": (
        f"{WRONG}if __name__ == '__main__':\n    print({OLD_MARKER!r})\n    exit(0)\n",
        TESTS,
        "unsafe_solution",
        "exits the process",
    ),
    "forge_status_via_caller_frame": (
        "import os, sys\n"
        "status_fd = sys._getframe(1).f_locals['status_fd']\n"
        f"print({OLD_MARKER!r}, flush=True)\n"
        "line = repr({'pid': os.getpid(), 'main': True, 'verdict': 'passed', 'exc_type': None,"
        " 'reason': ''}) + '\\n'\n"
        "os.write(status_fd, line.encode())\n"
        f"os._exit(1)\n{WRONG}",
        TESTS,
        "unsafe_solution",
        "introspects frames",
    ),
    "forge_status_via_fd": (
        f"import os\n{WRONG}print({OLD_MARKER!r}, flush=True)\n"
        "line = repr({'pid': os.getpid(), 'main': True, 'verdict': 'passed', 'exc_type': None,"
        " 'reason': ''}) + '\\n'\n"
        "for fd in range(3, 64):\n    try:\n        os.write(fd, line.encode())\n"
        "    except OSError:\n        pass\nos._exit(1)\n",
        TESTS,
        "unsafe_solution",
        "exits the process",  # also writes raw descriptors: the first finding is reported
    ),
    "read_own_source": (
        f"{WRONG}source = open('/proc/self/cmdline').read()\n",
        TESTS,
        "unsafe_solution",
        "reads the harness",
    ),
    "patch_the_classifier": (
        f"import sys\n{WRONG}sys._getframe(1).f_globals['_classify'] = "
        f"lambda exc: ('passed', None, '')\nprint({OLD_MARKER!r})\n",
        TESTS,
        "unsafe_solution",
        "introspects frames",
    ),
    "patch_assertion_error": (
        f"import builtins\n{WRONG}builtins.AssertionError = type('Never', (Exception,), {{}})\n",
        TESTS,
        "unsafe_solution",
        "rebinds builtins",
    ),
    "rebind_callable": (
        f"{WRONG}callable = lambda obj: False\n",
        "def test_add():\n    assert add(2, 3) == 5\n",
        "unsafe_solution",
        "rebinds builtins",
    ),
    "rebind_dunder_name": (
        f"{WRONG}__name__ = 'not_main'\n",
        "if __name__ == '__main__':\n    assert add(2, 3) == 5\n",
        "unsafe_solution",
        "rebinds __name__",
    ),
    "settrace_jumps_over_asserts": (
        "import sys\n"
        "lines = sys._getframe(1).f_locals['source'].decode().splitlines()\n"
        "def tracer(frame, event, arg):\n"
        "    if event == 'line' and frame.f_code.co_filename == 'main.py':\n"
        "        if lines[frame.f_lineno - 1].lstrip().startswith('assert'):\n"
        "            target = frame.f_lineno + 1\n"
        "            while lines[target - 1].strip() in ('',) or lines[target - 1]"
        ".lstrip().startswith('assert'):\n"
        "                target += 1\n"
        "            frame.f_lineno = target\n"
        "    return tracer\n"
        "sys._getframe().f_trace = tracer\n"
        f"sys.settrace(tracer)\n{WRONG}",
        TESTS,
        "unsafe_solution",
        "introspects frames",  # also traces execution: the first finding is reported
    ),
    "always_equal_result": (
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "def add(a, b):\n    return Anything()\n",
        TESTS,
        "unsafe_solution",
        "overrides equality",
    ),
    "lookup_table_from_test_source": (
        "import re, sys\n"
        "source = sys._getframe(1).f_locals['source'].decode()\n"
        "table = {(int(a), int(b)): int(c) for a, b, c in\n"
        "         re.findall(r'add\\((-?\\d+), (-?\\d+)\\) == (-?\\d+)', source)}\n"
        "def add(a, b):\n"
        "    return table.get((a, b), a - b)\n",
        TESTS,
        "unsafe_solution",
        "introspects frames",
    ),
    "native_code": (
        f"import ctypes\n{WRONG}ctypes.CDLL(None).exit(0)\n",
        TESTS,
        "unsafe_solution",
        "loads native code",
    ),
    "kill_the_runner": (
        f"import os\n{WRONG}os.kill(os.getppid(), 9)\n",
        TESTS,
        "unsafe_solution",
        "exits the process",
    ),
    "assert_true": (WRONG, "assert True\n", "weak_tests", "never call `add`"),
    "asserts_in_uncalled_helper": (
        WRONG,
        "def helper():\n    assert add(2, 3) == 5\n",
        "weak_tests",
        "no assertion ran",
    ),
    "asserts_on_a_different_function": (
        f"{WRONG}def mul(a, b):\n    return a * b\n",
        "assert mul(2, 3) == 6\n",
        "weak_tests",
        "never call `add`",
    ),
    "tautology": (WRONG, "assert add(2, 3) == add(2, 3)\n", "weak_tests", "returns None"),
    "swallowed_assertion": (
        WRONG,
        "try:\n    assert add(2, 3) == 5\nexcept AssertionError:\n    pass\n",
        "weak_tests",
        "returns None",
    ),
    "assert_on_a_tuple": (WRONG, "assert (add(2, 3) == 5, 'sum')\n", "lint_error", "always `True`"),
    "tests_reach_the_runner": (
        WRONG,
        "__synth_assert__ = lambda *args: None\nassert add(2, 3) == 5\n",
        "bad_tests",
        "special name",
    ),
    "tests_import_os": (
        WRONG,
        "import os\nos._exit(0)\nassert add(2, 3) == 5\n",
        "bad_tests",
        "tests import `os`",
    ),
    "tests_walk_generator_frames": (
        WRONG,
        "def peek():\n    yield probe.gi_frame.f_back\nprobe = peek()\nnext(probe)\n"
        "assert add(2, 3) == 5\n",
        "bad_tests",
        "introspects frames",
    ),
    "tests_formatter_gadget": (
        WRONG,
        "import string\nfield = '0.' + '_' * 2 + 'globals' + '_' * 2\n"
        "runner = string.Formatter().get_field(field, [add], {})\nassert add(2, 3) == 5\n",
        "bad_tests",
        "turns strings into objects",
    ),
    "tests_define_always_equal": (
        WRONG,
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "assert add(2, 3) == Anything()\n",
        "bad_tests",
        "tests define a class",
    ),
    "tests_exit_first": (
        WRONG,
        "raise SystemExit(0)\nassert add(2, 3) == 5\n",
        "error",
        "SystemExit",
    ),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    try:
        box = Sandbox(SandboxLimits(timeout_s=5.0, memory_mb=256), concurrency=2)
    except SandboxUnavailable as exc:
        if os.environ.get("SYNTH_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"sandbox required but unavailable: {exc}")
        pytest.skip(f"bubblewrap sandbox unavailable: {exc}")
    with box:
        yield box


@pytest.fixture(scope="module")
def checked(sandbox: Sandbox) -> dict[str, ResponseCheck]:
    cases = {**CONTROLS, **ATTACKS}
    texts = [response(solution, tests) for solution, tests, _, _ in cases.values()]
    return dict(zip(cases, verify_responses(texts, sandbox, problem=PROBLEM), strict=True))


def test_there_are_at_least_fifteen_kinds_of_attack() -> None:
    assert len(ATTACKS) >= 15


@pytest.mark.parametrize("kind", list(CONTROLS))
def test_honest_controls(checked: dict[str, ResponseCheck], kind: str) -> None:
    _, _, outcome, words = CONTROLS[kind]
    result = checked[kind]
    assert (result.outcome, words in result.reason) == (outcome, True), result


@pytest.mark.parametrize("kind", list(ATTACKS))
def test_gaming_candidate_is_rejected_with_its_reason(
    checked: dict[str, ResponseCheck], kind: str
) -> None:
    _, _, outcome, words = ATTACKS[kind]
    result = checked[kind]
    assert not result.accepted
    assert result.outcome == outcome, result
    assert words in result.reason, result.reason


# Past the static gate (switched off here), the run still decides nothing in the sample's favour.
RUNTIME = {
    "early_exit_after_marker": "the solution ended while loading",
    "os_exit_0": "the solution ended while loading",
    "forge_status_via_caller_frame": "the solution failed to load",
    "forge_status_via_fd": "garbage on its answer channel",
    "patch_the_classifier": "AssertionError",
    "patch_assertion_error": "AssertionError",
    "rebind_callable": "AssertionError",
    "rebind_dunder_name": "AssertionError",
    "settrace_jumps_over_asserts": "the solution failed to load",
    "always_equal_result": "not plain data",
    "lookup_table_from_test_source": "the solution failed to load",
    "kill_the_runner": "killed by SIGKILL",
}


def test_without_the_static_gate_the_run_still_rejects_every_attack(sandbox: Sandbox) -> None:
    prepared = []
    for kind in RUNTIME:
        solution, tests, _, _ = ATTACKS[kind]
        ready, rejected = prepare(Program(solution, tests), PROBLEM, solution_gate_on=False)
        assert rejected is None, (kind, rejected)
        prepared.append(ready)
    results = sandbox.run_many([ready.program for ready in prepared])
    for kind, ready, result in zip(RUNTIME, prepared, results, strict=True):
        verdict = judge(result, ready)
        assert not verdict.accepted, (kind, verdict)
        assert RUNTIME[kind] in verdict.reason, (kind, verdict, result)


def test_the_runner_reads_no_line_the_candidate_could_have_printed(sandbox: Sandbox) -> None:
    """A verdict line needs the run's nonce, and only the runner's own descriptor is read."""
    ready, _ = prepare(Program(RIGHT, TESTS), PROBLEM)
    forged = ready.program.replace("main(json.loads(", "print('x {}')\nmain(json.loads(")
    result = sandbox.run(forged)
    assert judge(result, ready).accepted  # the extra line is ignored...
    other, _ = prepare(Program(RIGHT, TESTS), PROBLEM)
    assert other.nonce != ready.nonce
    assert not judge(result, other).accepted  # ...and a line with another nonce never counts


GCD_TESTS = "assert gcd(12, 18) == 6\nassert gcd(7, 5) == 1\n"
GCD_CASES = {
    "euclid": ("def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)\n", True),
    "lookup_table": ("def gcd(a, b):\n    return {(12, 18): 6, (7, 5): 1}.get((a, b), 1)\n", False),
    "bool_not_int": (
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n"
        "    a = abs(a)\n    return True if a == 1 else a\n",
        False,
    ),
}


def test_differential_check_against_the_seed(sandbox: Sandbox) -> None:
    reference = reference_for("math.gcd")
    assert reference is not None and len(reference.calls) >= 10
    texts = [response(solution, GCD_TESTS) for solution, _ in GCD_CASES.values()]
    checks = verify_responses(texts, sandbox, problem=GCD_PROBLEM, reference=reference)
    for (kind, (_, kept)), check in zip(GCD_CASES.items(), checks, strict=True):
        assert check.accepted == kept, (kind, check)
        if not kept:
            assert check.outcome == "disagrees_with_reference", (kind, check)
            assert "generated inputs" in check.reason
    agreement = [v for v in checks[0].verdicts if v.name == "reference_agreement"]
    assert agreement and agreement[0].score == 1.0


def test_cli_prints_the_verdict_through_the_assets_checks(
    sandbox: Sandbox, tmp_path, capsys
) -> None:
    from synth_lib.commands.cli import main

    path = tmp_path / "response.md"
    solution, tests, _, _ = ATTACKS["always_equal_result"]
    path.write_text(response(solution, tests))
    assert main(["verify", "code", str(path), "--function", "add"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["accepted"], report["verdict"]) == (False, "unsafe_solution")
    assert "overrides equality" in report["reason"]
    lookup, _ = GCD_CASES["lookup_table"]
    path.write_text(response(lookup, GCD_TESTS))
    assert main(["verify", "code", str(path), "--reference", "math:gcd"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "disagrees_with_reference"
    assert main(["verify", "code", str(path)]) == 0  # without a reference only its tests decide
    assert json.loads(capsys.readouterr().out)["accepted"] is True
    assert main(["verify", "code", str(path), "--reference", "nosuch:thing"]) == 2


def test_honest_shapes_cross_the_plain_data_channel(sandbox: Sandbox) -> None:
    """pytest-style tests, generators, Fractions and exceptions work as they would in-process."""
    solution = (
        "from fractions import Fraction\n"
        "def halves(n):\n"
        "    if n < 0:\n"
        "        raise ValueError('negative')\n"
        "    for i in range(n):\n"
        "        yield Fraction(i, 2)\n"
    )
    tests = (
        "import pytest\n"
        "from fractions import Fraction\n"
        "assert list(halves(3)) == [0, Fraction(1, 2), 1]\n"
        "assert sum(halves(4)) == pytest.approx(3.0)\n"
        "with pytest.raises(ValueError, match='neg'):\n"
        "    list(halves(-1))\n"
    )
    problem = "Write a generator `halves(n)` yielding 0, 1/2, 1, ... as Fractions."
    (check,) = verify_responses([response(solution, tests)], sandbox, problem=problem)
    assert check.accepted, check
    assert "2 assertions ran" in check.reason
