"""Shared test setup: offline Hugging Face, one smoke model per session, the GSM8K data,
and a closing summary of every skip (a failure, under SYNTH_REQUIRE_ALL=1, unless GPU)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import environment

environment.apply_require_all()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MLflow costs seconds per fresh store; its own tests switch it back on explicitly.
os.environ.setdefault("SYNTH_MLFLOW", "off")
# Unit tests use the fast random-weight smoke model, chosen explicitly (the default is a real
# model); tests of the real default model unset SYNTH_MODEL themselves.
os.environ.setdefault("SYNTH_MODEL", "smoke")

REPO_ROOT = Path(__file__).resolve().parents[1]
PG = {"host": os.environ.get("SYNTH_TEST_PG_HOST", "127.0.0.1"), "user": "postgres", "port": 5432}


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    try:
        import psycopg2
    except ImportError as exc:
        environment.missing("postgres", f"psycopg2 is not importable ({exc})")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        environment.missing("postgres", f"no PostgreSQL at {PG['host']}:{PG['port']} ({exc})")
    admin.autocommit = True
    name = f"synth_test_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def production_instance_env(postgres_db: str, tmp_path: Path, monkeypatch) -> Path:
    """DAGSTER_HOME with dagster.production.yaml, its SYNTH_PG_* pointing at `postgres_db`."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.production.yaml", dagster_home / "dagster.yaml")
    for key, value in {
        "SYNTH_PG_HOST": PG["host"],
        "SYNTH_PG_USER": PG["user"],
        "SYNTH_PG_PASSWORD": "",
        "SYNTH_PG_DB": postgres_db,
        "SYNTH_PG_PORT": str(PG["port"]),
    }.items():
        monkeypatch.setenv(key, value)
    return dagster_home


@pytest.fixture(scope="session")
def gsm8k_train() -> Path:
    """GSM8K train split at SYNTH_GSM8K_PATH (skip, or fail when required, without it)."""
    return environment.gsm8k_file("train")


@pytest.fixture(scope="session")
def gsm8k_test() -> Path:
    """GSM8K test split at SYNTH_GSM8K_TEST_PATH (skip, or fail when required, without it)."""
    return environment.gsm8k_file("test")


@pytest.fixture(scope="session")
def smoke_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke model build per test session, shared by every engine in it."""
    from synth_lib.engines.tiny_model import ensure_smoke_model

    folder = tmp_path_factory.mktemp("models")
    ensure_smoke_model(folder)
    return folder


@pytest.fixture
def synth_home(tmp_path: Path, smoke_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SYNTH_HOME for one test, reusing the session's smoke model."""
    home = tmp_path / "home"
    monkeypatch.setenv("SYNTH_HOME", str(home))
    monkeypatch.setenv("SYNTH_MODELS_DIR", str(smoke_models_dir))
    return home


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _skips(config: pytest.Config) -> list[tuple[str, str, bool]]:
    """(test id, reason, is a GPU test) for every skip reported in this session."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):  # xdist: the controller reports
        return []
    reports = reporter.stats.get("skipped", [])
    return [
        (r.nodeid, _skip_reason(r), "gpu" in getattr(r, "keywords", {}))
        for r in reports
        if r.skipped
    ]


def _unexpected(config: pytest.Config) -> list[tuple[str, str]]:
    """Skips that SYNTH_REQUIRE_ALL=1 does not allow: everything but GPU tests."""
    if os.environ.get(environment.REQUIRE_ALL) != "1":
        return []
    return [(nodeid, reason) for nodeid, reason, gpu in _skips(config) if not gpu]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.OK and _unexpected(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line per skip reason, naming its tests, so a skip in CI is seen."""
    skips = _skips(config)
    if not skips:
        return
    by_reason: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for nodeid, reason, gpu in skips:
        by_reason[(reason, gpu)].append(nodeid)
    gpu_count = sum(gpu for _, _, gpu in skips)
    terminalreporter.section(f"skipped: {len(skips)} ({gpu_count} GPU)")
    for (reason, gpu), nodeids in sorted(by_reason.items()):
        label = "[gpu test] " if gpu else ""
        terminalreporter.line(f"{len(nodeids)} skipped {label}{reason}: {', '.join(nodeids)}")
    unexpected = _unexpected(config)
    if unexpected:
        terminalreporter.line(
            f"FAILED: {environment.REQUIRE_ALL}=1 allows only GPU tests to skip; "
            f"{len(unexpected)} other skips above",
            red=True,
        )
