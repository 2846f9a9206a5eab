"""Execution traces: answers are what CPython returns, batched, reproducible, noise rejected."""

from __future__ import annotations

import fractions  # noqa: F401  (the traced expressions are re-evaluated here to compare)
import math
import os.path  # noqa: F401
import textwrap  # noqa: F401
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest

from resources.sandbox import CodeSandbox
from synth_assets.code import execution_traces, execution_traces_reproduce
from synth_assets.partitions import seed_shards
from synth_lib.code.execution_traces import FUNCTIONS, TraceFunction, plan_calls, trace
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from synth_lib.sandbox.host import Sandbox, SandboxLimits, SandboxUnavailable
from tests import environment
from tests.shards import STDLIB, materialize_shard

CTX = RowContext(run_id="test-run")
PICK = {"math.isqrt", "textwrap.shorten", "os.path.normpath", "fractions.Fraction"}
CHOSEN = tuple(fn for fn in FUNCTIONS if fn.name in PICK)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    try:
        box = Sandbox(SandboxLimits(timeout_s=20.0), concurrency=2)
    except SandboxUnavailable as exc:
        environment.missing("sandbox", f"bubblewrap sandbox unavailable: {exc}")
    with box:
        yield box


def _seed(name: str) -> dict:
    return make_row(
        stage="code_seeds",
        payload={"text": f"def {name}(): ...", "name": name, "module": name.split(".")[0]},
        ctx=CTX,
        source=Source("cpython-stdlib", name, "PSF-2.0"),
    )


def test_answers_match_cpython_and_calls_are_batched(sandbox) -> None:
    seed = _seed("math.isqrt")
    out = trace([seed], sandbox, CTX, functions=CHOSEN, per_function=15, calls_per_process=10)
    meta = out.metadata
    assert meta["calls"] == len(plan_calls(CHOSEN, 15, 0))
    assert meta["sandbox_processes"] == math.ceil(meta["calls"] / 10)
    assert meta["rows"] == meta["calls"] and meta["rejected"] == {}
    for row in out.rows:
        try:
            expected = repr(eval(row["expression"]))
        except Exception as exc:
            expected = f"raises {type(exc).__name__}: {exc}"
        assert row["response"] == expected, row["expression"]
        assert row["expression"] in row["prompt"]
    assert meta["exception_rows"] >= 1  # isqrt of negatives, Fraction(x, 0)
    isqrt_rows = [r for r in out.rows if r["function"] == "math.isqrt"]
    assert isqrt_rows and all(r["parent_ids"] == [seed["id"]] for r in isqrt_rows)
    other = next(r for r in out.rows if r["function"] != "math.isqrt")
    assert other["parent_ids"] == [] and other["source"]["license"] == "PSF-2.0"
    assert other["generator"]["backend"] == "execution"
    assert other["generator"]["revision"] == sandbox.mode


def test_same_seed_gives_the_same_rows(sandbox) -> None:
    first = trace([], sandbox, CTX, functions=CHOSEN, per_function=5, seed=3)
    again = trace([], sandbox, CTX, functions=CHOSEN, per_function=5, seed=3)
    other = trace([], sandbox, CTX, functions=CHOSEN, per_function=5, seed=4)
    ids = [r["id"] for r in first.rows]
    assert ids == [r["id"] for r in again.rows]
    assert ids != [r["id"] for r in other.rows]


def test_unreliable_answers_are_rejected_with_reasons(sandbox) -> None:
    bad = (
        TraceFunction("random.random", "random", lambda r: ""),
        TraceFunction("time.sleep", "time", lambda r: "5"),
        TraceFunction("threading.Lock", "threading", lambda r: ""),
        TraceFunction("textwrap.dedent", "textwrap", lambda r: repr("  x\n" * 200)),
        TraceFunction("math.isqrt", "math", lambda r: "16"),
    )
    out = trace([], sandbox, CTX, functions=bad, per_function=1)
    assert out.rejected == {"unstable": 1, "timeout": 1, "memory_address": 1, "too_long": 1}
    assert [(r["expression"], r["response"]) for r in out.rows] == [("math.isqrt(16)", "4")]


def test_a_crashed_sandbox_process_rejects_its_calls_only(sandbox) -> None:
    crash = (TraceFunction("os.abort", "os", lambda r: ""),)
    out = trace([], sandbox, CTX, functions=crash + CHOSEN[:1], per_function=2, calls_per_process=1)
    assert out.rejected == {"no_result:error": 1}
    assert out.metadata["rows"] == out.metadata["calls"] - 1


@dg.asset(name="code_seeds", partitions_def=seed_shards)
def stub_code_seeds() -> pl.DataFrame:
    schema = {"text": pl.Utf8, "name": pl.Utf8, "module": pl.Utf8}
    return rows_to_frame([_seed("math.isqrt")], schema)


def test_asset_and_its_reproduce_check_materialize(sandbox) -> None:
    result = materialize_shard(
        [stub_code_seeds, execution_traces, execution_traces_reproduce],
        STDLIB,
        resources={"sandbox": CodeSandbox(timeout_s=20.0), "io_manager": dg.mem_io_manager},
        run_config={"ops": {"execution_traces": {"config": {"per_function": 3}}}},
    )
    assert result.success
    meta = result.asset_materializations_for_node("execution_traces")[0].metadata
    assert meta["sandbox_mode"].value == "bwrap"
    assert meta["linked_to_code_seeds"].value == 3
    assert meta["dagster/row_count"].value == meta["calls"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["mismatched"].value == 0
