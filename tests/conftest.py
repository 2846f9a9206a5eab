"""Shared test setup: offline Hugging Face, one smoke model per session, shared data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MLflow costs seconds per fresh store; its own tests switch it back on explicitly.
os.environ.setdefault("SYNTH_MLFLOW", "off")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_GSM8K = REPO_ROOT.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    if not (SHARED_GSM8K / "train.jsonl").is_file():
        pytest.skip(f"GSM8K data not found at {SHARED_GSM8K}")
    return SHARED_GSM8K


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
