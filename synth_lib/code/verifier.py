"""Whether a candidate's tests really passed: gates before the run, a verdict from outside it.

Candidates are written by models, and models learn to game verifiers. So "verified" rests
on four layers, each rejecting with a reason:

1. a static gate on the solution (`solution_gate`): code that introspects frames, traces,
   exits the process, spawns processes, writes raw descriptors, loads native code, runs
   dynamic code, rebinds builtins or `__name__`, or defines an always-true `__eq__`;
2. a stricter gate on the tests (`prepare_tests`), which run in the trusted runner: only
   plain-data imports, no private or special names, frames, classes, attribute assignment
   or string-to-object gadgets; each `assert` is rewritten to a counted check;
3. the run (`trusted_runner`): the tests run in a process the candidate cannot reach, the
   candidate in a fresh interpreter behind a plain-data channel; the verdict is one line
   tagged with a per-run nonce on a descriptor only the runner holds;
4. the judgement (`judge`): at least one assertion ran, the tests call the function the
   problem asks for, they fail against stubs of it (returns None; raises), and, with a
   reference, candidate and reference agree on generated inputs.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synth_lib.code import trusted_runner
from synth_lib.code.lint import PARSE_ERRORS, Program
from synth_lib.sandbox.host import SandboxResult

RUNNER_SOURCE = (Path(__file__).parent / "trusted_runner.py").read_text()
BUILTIN_NAMES = frozenset(dir(builtins))
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name in BUILTIN_NAMES
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), Exception)
)
FRAMES, TRACE, EXIT, SPAWN, FDS, NATIVE, DYNAMIC, INTERNALS, SOURCE = (
    "introspects frames",
    "traces execution",
    "exits the process",
    "spawns processes",
    "writes raw descriptors",
    "loads native code",
    "runs dynamic code",
    "reaches interpreter internals",
    "reads the harness",
)
DENIED_MODULES = {
    "inspect": FRAMES, "traceback": FRAMES, "gc": INTERNALS, "ctypes": NATIVE, "_ctypes": NATIVE,
    "cffi": NATIVE, "mmap": NATIVE, "importlib": DYNAMIC, "imp": DYNAMIC, "marshal": DYNAMIC,
    "code": DYNAMIC, "codeop": DYNAMIC, "runpy": DYNAMIC, "pdb": TRACE, "bdb": TRACE,
    "trace": TRACE, "faulthandler": TRACE, "signal": EXIT, "atexit": EXIT, "subprocess": SPAWN,
    "multiprocessing": SPAWN, "pty": SPAWN, "builtins": "rebinds builtins",
    "__builtin__": "rebinds builtins", "socket": FDS, "fcntl": FDS, "posix": FDS,
    "_posixsubprocess": SPAWN,
}  # fmt: skip
DENIED_ATTRIBUTES = {
    **dict.fromkeys(
        ("_getframe", "_current_frames", "f_back", "f_globals", "f_locals", "f_builtins",
         "f_code", "f_lineno", "f_trace", "tb_frame", "tb_next", "gi_frame", "cr_frame",
         "ag_frame", "__traceback__", "exc_info", "exception", "currentframe", "stack",
         "_getframemodulename"), FRAMES),
    **dict.fromkeys(("settrace", "setprofile", "gettrace", "monitoring", "call_tracing"), TRACE),
    **dict.fromkeys(("exit", "_exit", "abort", "kill", "killpg", "raise_signal"), EXIT),
    **dict.fromkeys(
        ("fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp",
         "execvp", "execvpe", "spawnv", "spawnl", "posix_spawn", "posix_spawnp"), SPAWN),
    **dict.fromkeys(
        ("write", "writev", "pwrite", "dup", "dup2", "fdopen", "close", "closerange", "open",
         "pipe", "fromfd", "sendfile"), FDS),
    **dict.fromkeys(("CDLL", "cdll", "dlopen", "PyDLL", "pydll", "load_dynamic"), NATIVE),
    **dict.fromkeys(
        ("modules", "__builtins__", "__globals__", "__code__", "__closure__", "__subclasses__",
         "__bases__", "__base__", "__mro__", "__dict__", "__getattribute__", "__setattr__",
         "__loader__", "__spec__", "__import__", "__self__", "__func__", "__reduce__",
         "__reduce_ex__"), INTERNALS),
    **dict.fromkeys(("argv", "orig_argv", "stdin", "__file__", "__cached__"), SOURCE),
}  # fmt: skip
DENIED_NAMES = {
    "exit": EXIT, "quit": EXIT, "SystemExit": EXIT, "KeyboardInterrupt": EXIT,
    "eval": DYNAMIC, "exec": DYNAMIC, "compile": DYNAMIC, "__import__": DYNAMIC,
    "globals": INTERNALS, "vars": INTERNALS, "locals": INTERNALS, "__builtins__": INTERNALS,
    "breakpoint": TRACE, "__file__": SOURCE, "__loader__": INTERNALS, "__spec__": INTERNALS,
}  # fmt: skip
# Spelled inside a string, these are a getattr or an eval away from use.
HIDDEN_IN_STRINGS = (
    "_getframe", "settrace", "setprofile", "f_back", "f_globals", "f_locals", "tb_frame",
    "gi_frame", "__globals__", "__builtins__", "__subclasses__", "__code__", "__import__",
    "__closure__", "_exit", "/proc/",
)  # fmt: skip
# Method names the solution reaches through objects (`os.write`) are denied only on modules.
MODULE_ONLY_ATTRIBUTES = frozenset(("write", "open", "close", "exception", "stack", "exit"))
TEST_MODULES = trusted_runner.SAFE_MODULES
TEST_DENIED_NAMES = trusted_runner.UNSAFE_BUILTINS
_TARGET_PATTERNS = (
    re.compile(r"`([A-Za-z_]\w*)\s*\("),
    re.compile(r"\bdef\s+([A-Za-z_]\w*)\s*\("),
    re.compile(r"\bfunction\s+`?([A-Za-z_]\w*)`?"),
    re.compile(r"\b([A-Za-z_]\w*)\s*\([^()]*\)"),
)


@dataclass(frozen=True)
class Reference:
    """The seed function a candidate must agree with, and the argument lists to try.

    `only_for`: compare only when the candidate's target has this name (a problem inspired
    by a seed may ask for a different function; one that keeps the name must agree).
    """

    function: str
    calls: tuple[str, ...]
    only_for: str | None = None


def reference_for(
    function: str, *, per_function: int = 20, seed: int = 0, only_same_name: bool = True
) -> Reference | None:
    """A Reference for stdlib `function` (e.g. textwrap.shorten) if the execution-traces
    input generator knows it; None otherwise."""
    from synth_lib.code.execution_traces import FUNCTIONS, plan_calls

    known = next((fn for fn in FUNCTIONS if fn.name == function), None)
    if known is None:
        return None
    calls = tuple(
        expr[len(known.name) + 1 : -1] for _, expr in plan_calls([known], per_function, seed)
    )
    short = function.rsplit(".", 1)[-1]
    return Reference(function, calls, short if only_same_name else None)


@dataclass(frozen=True)
class CodeVerdict:
    """The verifier's decision about one candidate."""

    verdict: str
    reason: str
    asserts: int = 0
    agreement: float | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict == "passed"

    @property
    def key(self) -> str:
        """A stable rejection key for counting: the verdict, plus what a gate caught."""
        if self.verdict in ("unsafe_solution", "bad_tests", "weak_tests", "no_target"):
            return f"{self.verdict}: {re.sub(r'`[^`]*`', '`f`', self.reason.split(':')[0])}"
        return self.verdict


@dataclass(frozen=True)
class Prepared:
    """A candidate that passed the static gates: what the sandbox runs, and its nonce."""

    program: str
    nonce: str
    target: str


@dataclass(frozen=True)
class _Solution:
    functions: tuple[str, ...]
    exceptions: dict[str, str]


def _module_level_names(tree: ast.Module) -> _Solution:
    functions: list[str] = []
    exceptions: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            functions += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else ""
                if name in BUILTIN_EXCEPTIONS or name in exceptions:
                    exceptions[node.name] = exceptions.get(name, name)
                    break
    return _Solution(tuple(dict.fromkeys(functions)), exceptions)


def target_function(problem: str, functions: Sequence[str]) -> tuple[str | None, str]:
    """(the function the problem asks for, "") or (None, why): named in the problem, else the
    solution's only (or first) top-level function."""
    named = [m for pattern in _TARGET_PATTERNS for m in pattern.findall(problem or "")]
    for name in named:
        if name in functions:
            return name, ""
    asked = [n for n in named[:1] if n not in BUILTIN_NAMES]
    if asked:
        return None, f"the problem asks for `{asked[0]}`; the solution does not define it"
    if functions:
        return functions[0], ""
    return None, "the solution defines no function"


def _always_true_eq(node: ast.ClassDef) -> bool:
    for item in node.body:
        body: list[ast.stmt] = []
        if isinstance(item, ast.FunctionDef) and item.name in ("__eq__", "__ne__", "__hash__"):
            body = [s for s in item.body if not isinstance(s, ast.Expr)]
        elif (
            isinstance(item, ast.Assign)
            and isinstance(item.value, ast.Lambda)
            and any(isinstance(t, ast.Name) and t.id == "__eq__" for t in item.targets)
        ):
            body = [ast.Return(item.value.body)]
        if len(body) == 1 and isinstance(body[0], ast.Return):
            value = body[0].value
            if isinstance(value, ast.Constant) and value.value in (True, False):
                return True
    return False


def _string_hides(text: str) -> str | None:
    for word in HIDDEN_IN_STRINGS:
        if word in text:
            why = DENIED_ATTRIBUTES.get(word) or DENIED_NAMES.get(word) or SOURCE
            return f"{why}: the string {text[:40]!r} names `{word}`"
    return None


def solution_gate(tree: ast.Module) -> str | None:
    """Why the solution is refused before it runs, or None."""
    for node in tree.body:
        targets: list[str] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            targets = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            nodes = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [t.id for t in nodes if isinstance(t, ast.Name)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            targets = [(a.asname or a.name).split(".")[0] for a in node.names]
        for name in targets:
            if name in BUILTIN_NAMES and not name.startswith("__"):
                return f"rebinds builtins: module-level `{name}` shadows the builtin"
    for node in ast.walk(tree):
        reason = _node_reason(node)
        if reason:
            return reason
    return None


def _node_reason(node: ast.AST) -> str | None:
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        for module in modules:
            root = (module or "").split(".")[0]
            if root in DENIED_MODULES:
                return f"{DENIED_MODULES[root]}: imports `{module}`"
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in DENIED_ATTRIBUTES or alias.name in DENIED_NAMES:
                    why = DENIED_ATTRIBUTES.get(alias.name) or DENIED_NAMES[alias.name]
                    return f"{why}: imports `{alias.name}` from `{node.module}`"
    if isinstance(node, ast.Name):
        if node.id == "__name__" and not isinstance(node.ctx, ast.Load):
            return "rebinds __name__"
        if node.id in DENIED_NAMES:
            return f"{DENIED_NAMES[node.id]}: uses `{node.id}`"
    if isinstance(node, ast.Global | ast.Nonlocal) and "__name__" in node.names:
        return "rebinds __name__"
    if isinstance(node, ast.Attribute) and node.attr in DENIED_ATTRIBUTES:
        on_module = isinstance(node.value, ast.Name) and node.value.id in ("os", "sys", "io")
        if node.attr not in MODULE_ONLY_ATTRIBUTES or on_module:
            return f"{DENIED_ATTRIBUTES[node.attr]}: uses `.{node.attr}`"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        first = node.args[0] if node.args else None
        if node.func.id == "open" and isinstance(getattr(first, "value", None), int):
            return f"{FDS}: open() on descriptor {first.value}"
        if node.func.id in ("getattr", "setattr", "delattr", "hasattr") and len(node.args) > 1:
            name = node.args[1]
            if isinstance(name, ast.Constant) and name.value in DENIED_ATTRIBUTES:
                return f"{DENIED_ATTRIBUTES[name.value]}: {node.func.id}(…, {name.value!r})"
    if isinstance(node, ast.ClassDef) and _always_true_eq(node):
        return f"overrides equality: class `{node.name}` has an always-true/false __eq__"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _string_hides(node.value)
    return None


class _TestRewriter(ast.NodeTransformer):
    """Each `assert` becomes `__synth_assert__(cond, line, lambda: msg, text)`: a counted check."""

    def __init__(self, source: str) -> None:
        self.source = source

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        self.generic_visit(node)
        message = ast.Lambda(
            ast.arguments([], [], None, [], [], None, []), node.msg or ast.Constant(None)
        )
        call = ast.Call(
            ast.Name("__synth_assert__", ast.Load()),
            [
                node.test,
                ast.Constant(node.lineno),
                message,
                ast.Constant((ast.get_source_segment(self.source, node) or "")[:200]),
            ],
            [],
        )
        return ast.copy_location(ast.Expr(call), node)


def prepare_tests(tests: str, functions: Sequence[str]) -> tuple[str | None, str]:
    """(rewritten test source, "") or (None, why the tests are refused)."""
    try:
        tree = ast.parse(tests)
    except PARSE_ERRORS as exc:
        return None, f"tests do not parse: {exc}"
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and all(a.name in functions for a in node.names):
            continue  # `from solution import add`: the runner provides add
        body.append(node)
    tree.body = body
    for node in ast.walk(tree):
        reason = _test_node_reason(node)
        if reason:
            return None, reason
    tree = ast.fix_missing_locations(_TestRewriter(tests).visit(tree))
    return ast.unparse(tree), ""


_REFLECTIVE_PREFIXES = ("f_", "tb_", "gi_", "cr_", "ag_", "co_")


def _test_node_reason(node: ast.AST) -> str | None:
    """Why test code is refused: it runs in the trusted runner, so it may only compute with
    plain data and call the solution; nothing reflective, nothing that builds classes."""
    if isinstance(node, ast.ClassDef):
        return f"tests define a class (`{node.name}`)"
    if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
        return f"tests assign the attribute `.{node.attr}`"
    if isinstance(node, ast.Attribute) and (
        node.attr.startswith(_REFLECTIVE_PREFIXES) or node.attr in DENIED_ATTRIBUTES
    ):
        return f"tests reach `.{node.attr}` ({DENIED_ATTRIBUTES.get(node.attr, FRAMES)})"
    gadgets = [node.attr] if isinstance(node, ast.Attribute) else []
    if isinstance(node, ast.ImportFrom):
        gadgets = [alias.name for alias in node.names]
    for name in gadgets:
        if name in trusted_runner.GADGETS:
            return f"tests reach `{name}`, which turns strings into objects"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "type"
        and len(node.args) + len(node.keywords) != 1
    ):
        return "tests build a class with type()"
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        for module in modules:
            if module not in TEST_MODULES and module != "pytest":
                return f"tests import `{module}` (allowed: plain-data modules only)"
    if isinstance(node, ast.Name):
        if node.id.startswith("__") and node.id != "__name__":
            return f"tests use the special name `{node.id}`"
        if node.id in TEST_DENIED_NAMES:
            return f"tests use `{node.id}`"
    if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        return f"tests reach the private attribute `.{node.attr}`"
    if isinstance(node, ast.FunctionDef) and node.name.startswith("__") and node.name != "__init__":
        return f"tests define the special method `{node.name}`"
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "__" in node.value.replace("__main__", "")
    ):
        return "tests hide a special name in a string"
    return None


def prepare(
    program: Program,
    problem: str,
    reference: Reference | None = None,
    *,
    solution_gate_on: bool = True,
) -> tuple[Prepared | None, CodeVerdict | None]:
    """(what to run, None), or (None, the rejection) when a static gate refuses it.

    `solution_gate_on=False` skips layer 1 only, to test that the run's own defences hold.
    """
    try:
        tree = ast.parse(program.solution)
    except PARSE_ERRORS as exc:
        return None, CodeVerdict("compile_error", f"{type(exc).__name__}: {exc}")
    reason = solution_gate(tree) if solution_gate_on else None
    if reason:
        return None, CodeVerdict("unsafe_solution", reason)
    solution = _module_level_names(tree)
    target, why = target_function(problem, solution.functions)
    if target is None:
        return None, CodeVerdict("no_target", why)
    tests, why = prepare_tests(program.tests, solution.functions)
    if tests is None:
        return None, CodeVerdict("bad_tests", why)
    nonce = secrets.token_hex(16)
    spec = {
        "solution": program.solution,
        "tests": tests,
        "target": target,
        "functions": list(solution.functions),
        "exceptions": solution.exceptions,
        "nonce": nonce,
        "runner": RUNNER_SOURCE,
        "reference": None,
    }
    if reference and reference.only_for in (None, target):
        spec["reference"] = {"function": reference.function, "calls": list(reference.calls)}
    program_text = f"{RUNNER_SOURCE}\n\nmain(json.loads({json.dumps(spec)!r}))\n"
    return Prepared(program_text, nonce, target), None


def _runner_report(result: SandboxResult, nonce: str) -> dict | None:
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"{nonce} ")]
    if len(lines) != 1:
        return None
    try:
        report = json.loads(lines[0][len(nonce) + 1 :])
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def judge(result: SandboxResult, prepared: Prepared) -> CodeVerdict:
    """The verdict from the runner's nonce-tagged line and the sandbox's own outcome."""
    if result.verdict in ("timeout", "resource_limit", "sandbox_error"):
        return CodeVerdict(result.verdict, result.reason)
    if result.verdict != "passed":  # the runner itself must have ended normally
        detail = ": ".join(x for x in (result.exc_type, result.reason) if x)
        return CodeVerdict("failed", f"the trusted runner did not finish ({detail})")
    report = _runner_report(result, prepared.nonce)
    if report is None:
        detail = ": ".join(x for x in (result.exc_type, result.reason) if x)
        return CodeVerdict("failed", f"no verdict from the trusted runner ({detail or 'none'})")
    target = prepared.target
    if not report.get("loaded"):
        kind, _, message = (report.get("load_error") or ["?", "", ""])[:3]
        if kind in ("SystemExit", "KeyboardInterrupt", "CandidateFailed"):
            return CodeVerdict("failed", f"the solution ended while loading: {kind} {message}")
        return CodeVerdict("error", f"the solution failed to load: {kind}: {message}")
    real = report["real"]
    asserts = int(real.get("asserts", 0))
    if real["status"] == "candidate_failed":
        return CodeVerdict("failed", real["reason"], asserts)
    if real["status"] == "failed":
        return CodeVerdict("failed", f"AssertionError: {real['reason']}", asserts)
    if real["status"] != "passed":
        return CodeVerdict(real["status"], real["reason"], asserts)
    if asserts == 0:
        return CodeVerdict("weak_tests", "no assertion ran")
    if real.get("target_calls", 0) == 0:
        return CodeVerdict("weak_tests", f"the tests never call `{target}`", asserts)
    for stub, what in (("stub_none", "returns None"), ("stub_raise", "raises")):
        if report.get(stub) == "passed":
            return CodeVerdict("weak_tests", f"the tests also pass when `{target}` {what}", asserts)
    diff = report.get("differential")
    if diff is None:
        return CodeVerdict("passed", f"{asserts} assertions ran", asserts)
    if "failed" in diff:
        return CodeVerdict("failed", f"against the reference: {diff['failed']}", asserts)
    agreement = diff["agreed"] / diff["calls"] if diff["calls"] else 1.0
    if diff["agreed"] < diff["calls"]:
        first = (diff.get("disagreements") or [""])[0]
        reason = f"agrees on {diff['agreed']}/{diff['calls']} generated inputs; {first}"
        return CodeVerdict("disagrees_with_reference", reason, asserts, agreement)
    reason = f"{asserts} assertions ran; agrees with the reference on {diff['calls']} inputs"
    return CodeVerdict("passed", reason, asserts, agreement)
