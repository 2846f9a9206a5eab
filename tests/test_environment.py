"""Skips that CI cannot miss: SYNTH_REQUIRE_* turns a missing part into a failure naming it,
and the closing summary names every skipped test and why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import environment
from tests.conftest import REPO_ROOT

INNER_TESTS = """
import pytest

from tests import environment


def test_needs_postgres():
    environment.missing("postgres", "nothing answers on 127.0.0.1:5432")


def test_needs_gsm8k(gsm8k_test):
    assert gsm8k_test.is_file()


def test_plain_skip():
    pytest.skip("no reason to run here")


@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no CUDA GPU")


def test_runs():
    assert True
"""


def _run(tmp_path: Path, select: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The tests above in a child pytest that loads this repository's conftest."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_REQUIRE_")}
    clean.pop("SYNTH_GSM8K_TEST_PATH", None)
    clean["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_flags_a_missing_part_skips_and_the_summary_names_it(tmp_path):
    out = _run(tmp_path, "postgres or gsm8k or runs")
    assert out.returncode == 0, out.stdout
    assert "skipped: 2 (0 GPU)" in out.stdout
    assert (
        "1 skipped [postgres] nothing answers on 127.0.0.1:5432 (SYNTH_REQUIRE_POSTGRES=1 "
        "makes this fail): test_inner.py::test_needs_postgres"
    ) in out.stdout
    assert "[gsm8k] SYNTH_GSM8K_TEST_PATH is not set" in out.stdout


@pytest.mark.parametrize(
    "env",
    [{"SYNTH_REQUIRE_ALL": "1"}, {"SYNTH_REQUIRE_POSTGRES": "1", "SYNTH_REQUIRE_GSM8K": "1"}],
)
def test_a_required_part_fails_naming_it(tmp_path, env):
    out = _run(tmp_path, "postgres or gsm8k or runs", **env)
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed" in out.stdout and "1 error" in out.stdout  # error: in a fixture
    assert "SYNTH_REQUIRE_POSTGRES=1 but PostgreSQL (psycopg2" in out.stdout
    assert "SYNTH_REQUIRE_GSM8K=1 but GSM8K data" in out.stdout


def test_gsm8k_path_comes_from_the_environment(tmp_path):
    data = tmp_path / "elsewhere.jsonl"
    data.write_text('{"question": "q", "answer": "#### 1"}\n')
    out = _run(tmp_path, "gsm8k", SYNTH_REQUIRE_ALL="1", SYNTH_GSM8K_TEST_PATH=str(data))
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout
    out = _run(tmp_path, "gsm8k", SYNTH_GSM8K_TEST_PATH=str(tmp_path / "absent.jsonl"))
    assert "absent.jsonl is not a file" in out.stdout


def test_require_all_lets_only_gpu_tests_skip(tmp_path):
    gpu_only = _run(tmp_path, "gpu or runs", SYNTH_REQUIRE_ALL="1")
    assert gpu_only.returncode == 0, gpu_only.stdout
    assert "1 skipped [gpu test] no CUDA GPU: test_inner.py::test_needs_a_gpu" in gpu_only.stdout
    other = _run(tmp_path, "plain or gpu or runs", SYNTH_REQUIRE_ALL="1")
    assert other.returncode == 1, other.stdout
    assert "1 skipped no reason to run here: test_inner.py::test_plain_skip" in other.stdout
    assert "SYNTH_REQUIRE_ALL=1 allows only GPU tests to skip; 1 other skips" in other.stdout
    assert _run(tmp_path, "plain or runs").returncode == 0


def test_require_all_sets_every_part_flag_but_keeps_an_explicit_one():
    env = {"SYNTH_REQUIRE_ALL": "1", "SYNTH_REQUIRE_UI": "0"}
    environment.apply_require_all(env)
    assert env["SYNTH_REQUIRE_POSTGRES"] == env["SYNTH_REQUIRE_S3"] == "1"
    assert env["SYNTH_REQUIRE_SANDBOX"] == env["SYNTH_REQUIRE_GSM8K"] == "1"
    assert env["SYNTH_REQUIRE_UI"] == "0"
    untouched = {"SYNTH_REQUIRE_ALL": "0"}
    environment.apply_require_all(untouched)
    assert untouched == {"SYNTH_REQUIRE_ALL": "0"}


def test_ci_requires_every_part_and_runs_make_test():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "SYNTH_REQUIRE_ALL=1 make test" in script
