"""Resource sets per profile. `local` (the default) needs no server, network or GPU."""

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg

from resources.engine import GenerationEngine
from resources.lineage import OpenLineageEmitter
from resources.object_store import S3Storage
from resources.parquet_io import PolarsParquetIOManager
from resources.sandbox import CodeSandbox
from resources.storage import SynthStorage
from resources.tracking import MlflowTracking


def synth_home() -> Path:
    """SYNTH_HOME, else `.synth` in the working directory."""
    return Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth")).resolve()


def _secret(name: str) -> dg.EnvVar | str:
    """A secret only ever as a reference to the environment variable, never its value."""
    return dg.EnvVar(name) if name in os.environ else ""


def _switch(name: str) -> bool:
    return os.environ.get(name, "on").lower() not in ("0", "off", "false", "no")


def _cache_settings(shared: bool) -> dict[str, Any]:
    """Where the response cache and failure log live: SYNTH_CACHE_URL when set; else, when
    `shared` (production) and the instance is on PostgreSQL (SYNTH_PG_HOST set), that
    database, so every worker of a fleet sees the same answers and failures; else SQLite
    under SYNTH_HOME."""
    if "SYNTH_CACHE_URL" in os.environ:
        return {"cache_url": dg.EnvVar("SYNTH_CACHE_URL")}
    if not shared or "SYNTH_PG_HOST" not in os.environ:
        return {}
    user, host = quote(os.environ["SYNTH_PG_USER"], safe=""), os.environ["SYNTH_PG_HOST"]
    port, db = os.environ.get("SYNTH_PG_PORT", "5432"), quote(os.environ["SYNTH_PG_DB"], safe="")
    return {
        "cache_url": f"postgresql://{user}@{host}:{port}/{db}",
        "cache_password": _secret("SYNTH_PG_PASSWORD"),
    }


def local_resources(home: Path | None = None, shared_cache: bool = False) -> dict[str, Any]:
    """Parquet, lineage events and MLflow on local disk; engine from SYNTH_ENGINE / SYNTH_MODEL;
    the response cache in SQLite unless `shared_cache` or SYNTH_CACHE_URL (see _cache_settings)."""
    home = home or synth_home()
    return {
        "io_manager": PolarsParquetIOManager(
            base_dir=str(home / "data"),
            lineage=OpenLineageEmitter(
                enabled=_switch("SYNTH_OPENLINEAGE"),
                file_path=str(home / "openlineage" / "events.jsonl"),
            ),
            tracking=MlflowTracking(
                enabled=_switch("SYNTH_MLFLOW"),
                tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            ),
        ),
        "storage": SynthStorage(home=str(home)),
        "sandbox": CodeSandbox(mode=os.environ.get("SYNTH_SANDBOX_MODE", "bwrap")),
        "engine": GenerationEngine(
            backend=os.environ.get("SYNTH_ENGINE", "transformers"),
            model=os.environ.get("SYNTH_MODEL", ""),
            device=os.environ.get("SYNTH_DEVICE", "cpu"),
            cache_dir=str(home / "cache"),
            models_dir=os.environ.get("SYNTH_MODELS_DIR", str(home / "models")),
            openai_base_url=os.environ.get("SYNTH_OPENAI_BASE_URL", ""),
            openai_api_key=_secret("SYNTH_OPENAI_API_KEY"),
            watermark=os.environ.get("SYNTH_WATERMARK", "off") == "on",
            watermark_key=_secret("SYNTH_WATERMARK_KEY"),
            price_table=os.environ.get("SYNTH_PRICE_TABLE", ""),
            **_cache_settings(shared_cache),
        ),
    }


def production_resources(home: Path | None = None) -> dict[str, Any]:
    """Lineage to an OpenLineage backend (e.g. Marquez), tracking to an MLflow server;
    SYNTH_OPENLINEAGE=off / SYNTH_MLFLOW=off switch them off (their URLs are then not needed)."""
    resources = local_resources(home, shared_cache=True)
    lineage_on, tracking_on = _switch("SYNTH_OPENLINEAGE"), _switch("SYNTH_MLFLOW")
    resources["io_manager"] = PolarsParquetIOManager(
        base_dir=os.environ["SYNTH_DATA_DIR"],
        s3=S3Storage(
            endpoint_url=os.environ.get("SYNTH_S3_ENDPOINT_URL", ""),
            region_name=os.environ.get("SYNTH_S3_REGION", ""),
            access_key_id=_secret("SYNTH_S3_ACCESS_KEY_ID"),
            secret_access_key=_secret("SYNTH_S3_SECRET_ACCESS_KEY"),
        ),
        lineage=OpenLineageEmitter(
            enabled=lineage_on,
            transport="http",
            url=os.environ["OPENLINEAGE_URL"] if lineage_on else "",
            api_key=_secret("OPENLINEAGE_API_KEY"),
            namespace=os.environ.get("OPENLINEAGE_NAMESPACE", "synth"),
        ),
        tracking=MlflowTracking(
            enabled=tracking_on,
            tracking_uri=os.environ["MLFLOW_TRACKING_URI"] if tracking_on else "",
            experiment_name=os.environ.get("SYNTH_MLFLOW_EXPERIMENT", "synth"),
        ),
    )
    return resources
