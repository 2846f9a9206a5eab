"""Execution traces: what stdlib functions return on generated inputs, run in the sandbox.

Code-reasoning data that needs no model and is correct by construction: the answer to
"what does `textwrap.shorten('a b c', width=4)` return?" is whatever CPython returned.
Inputs come from seeded per-function generators (edge cases included, so exceptions are
answers too). Calls are batched, a few hundred per sandbox process, each evaluated twice
under a per-call alarm: answers that differ between the two runs, that print a memory
address, that are too long or that time out are rejected with their reason.
"""

from __future__ import annotations

import importlib
import json
import platform
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from synth_lib.prompts import load_template
from synth_lib.provenance.schema import Generator, RowContext, Source, canonical_json, make_row
from synth_lib.sandbox.host import Sandbox

STAGE = "execution_traces"
TEMPLATE = "code_trace"
MAX_REPR_CHARS = 300
PER_CALL_S = 1.0
WORDS = (
    "alpha",
    "beta",
    "the",
    "quick",
    "Brown",
    "fox",
    "data",
    "x",
    "",
    "a  b",
    "ünï",
    "<b>",
    "&amp;",
    "a/b",
    "c.d",
    "it's",
    '"q"',
    "tab\there",
    "404",
    "MiXeD",
)
PATH_PARTS = ("", "/", "usr", "..", ".", "a.txt", "b.tar.gz", "dir/", "//x", ".hidden", "~")
JSON_TEXTS = ('{"a": 1}', "[1, 2.5, null]", '"s"', "{bad}", "", "[1,]", "true", '{"k": [{}]}')


@dataclass(frozen=True)
class TraceFunction:
    """A pure, deterministic stdlib callable and how to draw arguments for it."""

    name: str
    module: str
    make_args: Callable[[random.Random], str]

    def qualname(self) -> str:
        attr = self.name.rsplit(".", 1)[1]
        obj: Any = getattr(importlib.import_module(self.module), attr)
        module = getattr(obj, "__module__", None) or self.module
        return f"{module}.{getattr(obj, '__qualname__', attr)}"


def _text(r: random.Random, most: int = 8) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(0, most)))


def _ints(r: random.Random) -> list[int]:
    return [r.randint(-20, 50) for _ in range(r.randint(0, 7))]


def _path(r: random.Random) -> str:
    return "/".join(r.choice(PATH_PARTS) for _ in range(r.randint(1, 4)))


def _obj(r: random.Random, depth: int = 0) -> Any:
    pick = r.randint(0, 6 if depth < 2 else 3)
    if pick < 4:
        return [None, True, r.randint(-9, 99), r.choice(WORDS)][pick]
    if pick == 4:
        return round(r.random(), 3)
    if pick == 5:
        return [_obj(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {r.choice(WORDS): _obj(r, depth + 1) for _ in range(r.randint(0, 3))}


def _trio(r: random.Random) -> str:
    return ", ".join(str(r.choice((0, 0.25, 0.5, 0.75, 1.0))) for _ in range(3))


F = TraceFunction
FUNCTIONS: tuple[TraceFunction, ...] = (
    F("textwrap.shorten", "textwrap", lambda r: f"{_text(r, 12)!r}, width={r.randint(5, 30)}"),
    F("textwrap.wrap", "textwrap", lambda r: f"{_text(r, 12)!r}, width={r.randint(3, 20)}"),
    F("string.capwords", "string", lambda r: repr(_text(r))),
    F("math.gcd", "math", lambda r: f"{r.randint(-100, 1000)}, {r.randint(0, 1000)}"),
    F("math.comb", "math", lambda r: f"{r.randint(-2, 30)}, {r.randint(-1, 12)}"),
    F("math.isqrt", "math", lambda r: str(r.randint(-5, 10**6))),
    F("statistics.median", "statistics", lambda r: repr(_ints(r))),
    F("statistics.mode", "statistics", lambda r: repr(_ints(r))),
    F("colorsys.rgb_to_hsv", "colorsys", _trio),
    F("colorsys.hls_to_rgb", "colorsys", _trio),
    F("bisect.bisect_left", "bisect", lambda r: f"{sorted(_ints(r))!r}, {r.randint(-20, 50)}"),
    F("bisect.bisect_right", "bisect", lambda r: f"{sorted(_ints(r))!r}, {r.randint(-20, 50)}"),
    F("heapq.nlargest", "heapq", lambda r: f"{r.randint(0, 4)}, {_ints(r)!r}"),
    F("heapq.nsmallest", "heapq", lambda r: f"{r.randint(0, 4)}, {_ints(r)!r}"),
    F("fractions.Fraction", "fractions", lambda r: f"{r.randint(-12, 12)}, {r.randint(-3, 12)}"),
    F("os.path.join", "os.path", lambda r: ", ".join(repr(_path(r)) for _ in range(2))),
    F("os.path.normpath", "os.path", lambda r: repr(_path(r))),
    F("os.path.splitext", "os.path", lambda r: repr(_path(r))),
    F("os.path.basename", "os.path", lambda r: repr(_path(r))),
    F("html.escape", "html", lambda r: repr(_text(r))),
    F("html.unescape", "html", lambda r: repr(_text(r))),
    F("json.dumps", "json", lambda r: f"{_obj(r)!r}, sort_keys=True"),
    F("json.loads", "json", lambda r: repr(r.choice(JSON_TEXTS))),
    F("base64.b64encode", "base64", lambda r: repr(_text(r, 4).encode())),
    F("urllib.parse.quote", "urllib.parse", lambda r: repr(_text(r, 4))),
    F("difflib.get_close_matches", "difflib",
      lambda r: f"{r.choice(WORDS)!r}, {[r.choice(WORDS) for _ in range(5)]!r}"),
    F("fnmatch.fnmatch", "fnmatch",
      lambda r: f"{r.choice(PATH_PARTS)!r}, {r.choice(('*.txt', '?', '[a-c]*', '*', '.*'))!r}"),
    F("shlex.split", "shlex", lambda r: repr(_text(r, 5))),
    F("calendar.monthrange", "calendar", lambda r: f"{r.randint(1899, 2101)}, {r.randint(0, 13)}"),
    F("keyword.iskeyword", "keyword", lambda r: repr(r.choice(("if", "match", "None", "x")))),
)  # fmt: skip

DRIVER = """\
import json, signal
{imports}

class CallTimeout(BaseException):
    pass

def _alarm(signum, frame):
    raise CallTimeout()

signal.signal(signal.SIGALRM, _alarm)
NS = {namespace}
for index, expression in json.loads({calls!r}):
    seen = []
    for _ in range(2):
        signal.setitimer(signal.ITIMER_REAL, {per_call_s})
        try:
            seen.append(["value", repr(eval(expression, dict(NS)))])
        except CallTimeout:
            seen.append(["timeout", ""])
        except Exception as exc:
            seen.append(["exception", type(exc).__name__ + ": " + str(exc)])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    kind, text = seen[0]
    print(json.dumps({{"i": index, "kind": kind, "text": text[:{cap} + 1],
                      "stable": seen[0] == seen[1]}}))
"""


@dataclass
class TraceOutcome:
    """Verified rows, rejected calls with reasons, and the figures the asset reports."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    metadata: dict[str, Any] = field(default_factory=dict)


def functions_for_shard(
    seeds: Sequence[Mapping[str, Any]],
    *,
    owns_unlinked: bool,
    seed_names: Iterable[str],
    functions: Sequence[TraceFunction] = FUNCTIONS,
) -> tuple[TraceFunction, ...]:
    """The catalogue functions one seed shard traces, so no two shards trace the same call.

    A function whose code seed is in this shard is traced here (its rows descend from that
    seed); a function with no code seed at all (`seed_names`: every code seed's name, e.g.
    C functions such as `math.gcd`) belongs to the one shard that `owns_unlinked`.
    """
    here = {row["name"] for row in seeds}
    known = set(seed_names)
    return tuple(
        fn
        for fn in functions
        if fn.qualname() in here or (owns_unlinked and fn.qualname() not in known)
    )


def plan_calls(functions: Sequence[TraceFunction], per_function: int, seed: int) -> list[tuple]:
    """(function, expression) pairs: seeded per function, duplicates dropped."""
    calls = []
    for fn in functions:
        rng = random.Random(f"{seed}:{fn.name}")
        exprs = dict.fromkeys(f"{fn.name}({fn.make_args(rng)})" for _ in range(per_function))
        calls += [(fn, expr) for expr in exprs]
    return calls


def driver_source(functions: Sequence[TraceFunction], calls: Sequence[tuple[int, str]]) -> str:
    """The program one sandbox process runs for a chunk of calls."""
    modules = sorted({fn.module for fn in functions})
    roots = sorted({m.split(".")[0] for m in modules})
    return DRIVER.format(
        imports="\n".join(f"import {m}" for m in modules),
        namespace="{" + ", ".join(f"{r!r}: {r}" for r in roots) + "}",
        calls=json.dumps(list(calls)),
        per_call_s=PER_CALL_S,
        cap=MAX_REPR_CHARS,
    )


def _reason(item: Mapping[str, Any] | None, run_verdict: str) -> str | None:
    if item is None:
        return f"no_result:{run_verdict}"
    if item["kind"] == "timeout":
        return "timeout"
    if " at 0x" in item["text"]:
        return "memory_address"
    if not item["stable"]:
        return "unstable"
    if len(item["text"]) > MAX_REPR_CHARS:
        return "too_long"
    return None


def _parse(stdout: str) -> dict[int, dict[str, Any]]:
    found = {}
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
            found[item["i"]] = item
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _answer(item: Mapping[str, Any]) -> str:
    return item["text"] if item["kind"] == "value" else f"raises {item['text']}"


def trace(
    seeds: Sequence[Mapping[str, Any]],
    sandbox: Sandbox,
    ctx: RowContext,
    *,
    functions: Sequence[TraceFunction] = FUNCTIONS,
    per_function: int = 20,
    seed: int = 0,
    calls_per_process: int = 200,
) -> TraceOutcome:
    """Run every planned call in the sandbox; one row per verified input → output pair."""
    template = load_template(TEMPLATE)
    by_name = {row["name"]: row for row in seeds}
    calls = plan_calls(functions, per_function, seed)
    chunks = [calls[i : i + calls_per_process] for i in range(0, len(calls), calls_per_process)]
    programs = [
        driver_source(functions, [(i, expr) for i, (_, expr) in enumerate(chunk)])
        for chunk in chunks
    ]
    results = sandbox.run_many(programs)
    version = platform.python_version()
    generator = Generator(
        backend="execution",
        model=f"cpython-{version}",
        revision=sandbox.mode,
        template=template.name,
        template_hash=template.hash,
        sampling=canonical_json({"per_function": per_function}),
        seed=seed,
    )
    outcome = TraceOutcome()
    for chunk, result in zip(chunks, results, strict=True):
        found = _parse(result.stdout)
        for index, (fn, expr) in enumerate(chunk):
            item = found.get(index)
            reason = _reason(item, result.verdict)
            if reason:
                outcome.rejected[reason] += 1
                continue
            qualname = fn.qualname()
            parent = by_name.get(qualname)
            row = make_row(
                stage=STAGE,
                payload={
                    "prompt": template.render(expression=expr),
                    "response": _answer(item),
                    "expression": expr,
                    "function": qualname,
                    "outcome": item["kind"],
                },
                ctx=ctx,
                parents=[parent] if parent else [],
                generator=generator,
                source=None
                if parent
                else Source("cpython-stdlib", f"{qualname} (CPython {version})", "PSF-2.0"),
            )
            outcome.rows.append(row)
    kinds = Counter(row["outcome"] for row in outcome.rows)
    outcome.metadata = {
        "calls": len(calls),
        "sandbox_processes": len(programs),
        "sandbox_verdicts": dict(Counter(r.verdict for r in results)),
        "sandbox_mode": sandbox.mode,
        "rows": len(outcome.rows),
        "value_rows": kinds.get("value", 0),
        "exception_rows": kinds.get("exception", 0),
        "rejected": dict(outcome.rejected),
        "functions": len({row["function"] for row in outcome.rows}),
        "linked_to_code_seeds": sum(1 for row in outcome.rows if row["parent_ids"]),
        "sandbox_seconds": round(sum(r.duration_s for r in results), 3),
    }
    return outcome


def recheck(
    rows: Sequence[Mapping[str, Any]],
    sandbox: Sandbox,
    functions: Sequence[TraceFunction] = FUNCTIONS,
) -> list[str]:
    """Expressions whose recorded response differs from a fresh run in a new sandbox process."""
    known = {fn.name: fn for fn in functions}
    used = {known[n] for r in rows if (n := r["expression"].split("(", 1)[0]) in known}
    program = driver_source(
        sorted(used, key=lambda fn: fn.name), list(enumerate(r["expression"] for r in rows))
    )
    found = _parse(sandbox.run(program).stdout)
    return [
        row["expression"]
        for i, row in enumerate(rows)
        if i not in found or _reason(found[i], "") or _answer(found[i]) != row["response"]
    ]
