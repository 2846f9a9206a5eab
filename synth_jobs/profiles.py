"""Resource sets per profile. `local` (the default) needs no server, network or GPU."""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from resources.engine import GenerationEngine
from resources.parquet_io import PolarsParquetIOManager
from resources.sandbox import CodeSandbox
from resources.storage import SynthStorage


def synth_home() -> Path:
    """SYNTH_HOME, else `.synth` in the working directory."""
    return Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth")).resolve()


def local_resources(home: Path | None = None) -> dict[str, Any]:
    """Parquet on local disk and the engine chosen by SYNTH_ENGINE / SYNTH_MODEL."""
    home = home or synth_home()
    return {
        "io_manager": PolarsParquetIOManager(base_dir=str(home / "data")),
        "storage": SynthStorage(home=str(home)),
        "sandbox": CodeSandbox(mode=os.environ.get("SYNTH_SANDBOX_MODE", "bwrap")),
        "engine": GenerationEngine(
            backend=os.environ.get("SYNTH_ENGINE", "transformers"),
            model=os.environ.get("SYNTH_MODEL", ""),
            device=os.environ.get("SYNTH_DEVICE", "cpu"),
            cache_dir=str(home / "cache"),
            models_dir=os.environ.get("SYNTH_MODELS_DIR", str(home / "models")),
            openai_base_url=os.environ.get("SYNTH_OPENAI_BASE_URL", ""),
            openai_api_key=(
                dg.EnvVar("SYNTH_OPENAI_API_KEY") if "SYNTH_OPENAI_API_KEY" in os.environ else ""
            ),
            price_table=os.environ.get("SYNTH_PRICE_TABLE", ""),
        ),
    }
