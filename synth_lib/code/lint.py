"""From model text to a checked program: code blocks, solution/tests split, static gates.

Model output is untrusted text (from a random-weight smoke model, pure noise), so every
step returns a reason instead of raising. Running code costs a sandbox start; a syntax
error or an undefined name is found for a fraction of that. Ruff runs once over a whole
batch (one file per candidate) with the rule set CI pipelines use to catch code that
cannot work: E9 (syntax / IO errors), F63 (invalid comparisons), F7 (misplaced
statements), F82 (undefined names). Style is never a reason to reject a solution.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

FATAL_RULES = "E9,F63,F7,F82"
# What parsing or compiling hostile text can raise (deep nesting, NUL bytes, huge literals).
PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError)
RUFF_TIMEOUT_S = 120
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Program:
    """A candidate split into its solution and its tests."""

    solution: str
    tests: str

    def source(self) -> str:
        """Solution then tests: what is compiled and linted (they run apart, see `verifier`)."""
        return f"{self.solution.rstrip()}\n\n\n{self.tests.rstrip()}\n"


@dataclass(frozen=True)
class StaticCheck:
    """One gate's outcome for one source: `passed`, and the first problem if not."""

    passed: bool
    reason: str = ""


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks (```python, ```py or bare ```), in order, stripped."""
    return [block.strip("\n") for block in _FENCE.findall(text) if block.strip()]


def _is_test(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.FunctionDef | ast.ClassDef):
        return node.name.lower().startswith("test")
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def _has_assert(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except PARSE_ERRORS:
        return "assert " in source
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def split_program(text: str) -> tuple[Program | None, str]:
    """(program, "") or (None, reason): two or more blocks are solution + tests; one block
    is split before its first top-level test statement."""
    blocks = code_blocks(text)
    if not blocks:
        return None, "no_code_block"
    if len(blocks) >= 2:
        program = Program(blocks[0], "\n\n".join(blocks[1:]))
    else:
        try:
            body = ast.parse(blocks[0]).body
        except PARSE_ERRORS:
            return Program(blocks[0], ""), ""
        first = next((node for node in body if _is_test(node)), None)
        if first is None:
            return None, "no_tests"
        lines = blocks[0].splitlines()
        decorators = getattr(first, "decorator_list", None) or []
        cut = min([first.lineno, *(d.lineno for d in decorators)]) - 1
        program = Program("\n".join(lines[:cut]), "\n".join(lines[cut:]))
    if not _has_assert(program.tests):
        return None, "no_tests"
    return program, ""


def compile_check(source: str) -> StaticCheck:
    """Whether `source` parses and compiles (no code is run)."""
    try:
        compile(source, "candidate.py", "exec")
    except PARSE_ERRORS as exc:
        return StaticCheck(False, f"{type(exc).__name__}: {exc}")
    return StaticCheck(True)


@cache
def ruff_command() -> tuple[str, ...] | None:
    """How to start ruff: this interpreter's `ruff` module, else a `ruff` on PATH."""
    probe = subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return (sys.executable, "-m", "ruff")
    found = shutil.which("ruff")
    return (found,) if found else None


def lint_check(sources: Sequence[str], command: Sequence[str] | None = None) -> list[StaticCheck]:
    """Ruff's fatal rules over every source in one process; results in input order."""
    if not sources:
        return []
    command = command or ruff_command()
    if not command:
        raise RuntimeError("ruff is not installed: pip install ruff (it is a runtime dependency)")
    with tempfile.TemporaryDirectory(prefix="lint-") as folder:
        paths = [Path(folder, f"c{i:06d}.py") for i in range(len(sources))]
        for path, source in zip(paths, sources, strict=True):
            path.write_text(source, encoding="utf-8", errors="surrogatepass")
        done = subprocess.run(
            [
                *command,
                "check",
                "--isolated",
                "--no-cache",
                "--select",
                FATAL_RULES,
                "--output-format",
                "json",
                "--exit-zero",
                folder,
            ],
            capture_output=True,
            text=True,
            timeout=RUFF_TIMEOUT_S,
            check=False,
            cwd=folder,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ruff failed ({done.returncode}): {done.stderr[-500:]}")
        findings = json.loads(done.stdout or "[]")
    first: dict[str, str] = {}
    for item in sorted(findings, key=lambda f: (f["location"]["row"], f["location"]["column"])):
        name = Path(item["filename"]).name
        row = item["location"]["row"]
        first.setdefault(name, f"{item['code']} line {row}: {item['message']}")
    return [StaticCheck(path.name not in first, first.get(path.name, "")) for path in paths]
