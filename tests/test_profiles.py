"""The resource profiles: `production` against the machine's PostgreSQL, an S3 test server,
an OpenLineage HTTP backend and MLflow; SYNTH_OPENLINEAGE=off / SYNTH_MLFLOW=off in both."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from synth_jobs.profiles import local_resources, production_resources
from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame
from tests import environment
from tests.conftest import PG, REPO_ROOT

BUCKET = "synth-profiles"
KEYS = {"SYNTH_S3_ACCESS_KEY_ID": "test-key", "SYNTH_S3_SECRET_ACCESS_KEY": "test-secret"}
LINEAGE_TOKEN = "lineage-token"


@dg.asset
def profile_rows() -> dg.Output[pl.DataFrame]:
    """Three seed rows with full provenance and a row count, as every real asset writes them."""
    ctx = RowContext(run_id="profile-test")
    rows = [
        make_row(stage="text_seeds", payload={"text": t}, ctx=ctx, source=Source("d", t, "MIT"))
        for t in ("alpha", "beta", "gamma")
    ]
    return dg.Output(rows_to_frame(rows, {"text": pl.Utf8}), metadata={"rows": len(rows)})


class _LineageBackend(BaseHTTPRequestHandler):
    """Records every OpenLineage event posted to it, with its Authorization header."""

    received: list[tuple[str, str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet: the test reads what arrived instead."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SYNTH_HOME for one test (no engine here, so no smoke model)."""
    monkeypatch.setenv("SYNTH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def lineage_backend() -> Iterator[tuple[str, list]]:
    received: list[tuple[str, str, dict[str, Any]]] = []
    handler = type("Handler", (_LineageBackend,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with one empty bucket."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        environment.missing("s3", f"moto[server] is not installed ({exc})")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_boto_keys()).create_bucket(
        Bucket=BUCKET
    )
    try:
        yield url
    finally:
        server.stop()


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEYS["SYNTH_S3_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["SYNTH_S3_SECRET_ACCESS_KEY"],
    }


def _production_env(tmp_path: Path, s3_endpoint: str, lineage_url: str) -> dict[str, str]:
    return {
        "SYNTH_PROFILE": "production",
        "SYNTH_DATA_DIR": f"s3://{BUCKET}/{tmp_path.name}",
        "SYNTH_S3_ENDPOINT_URL": s3_endpoint,
        "SYNTH_S3_REGION": "us-east-1",
        **KEYS,
        "OPENLINEAGE_URL": lineage_url,
        "OPENLINEAGE_API_KEY": LINEAGE_TOKEN,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SYNTH_OPENLINEAGE": "on",
        "SYNTH_MLFLOW": "on",
    }


def _mlflow_runs(tmp_path: Path, dagster_run_id: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("synth")
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{dagster_run_id}'"
    )


@pytest.mark.slow
def test_production_profile_runs_on_postgres_s3_http_lineage_and_mlflow(
    production_instance_env, s3_endpoint, lineage_backend, home, tmp_path, monkeypatch
):
    import boto3
    import psycopg2  # importable: the postgres_db fixture skips (or fails) otherwise

    lineage_url, received = lineage_backend
    for key, value in _production_env(tmp_path, s3_endpoint, lineage_url).items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(production_instance_env)) as instance:
        result = dg.materialize(
            [profile_rows], resources=production_resources(home), instance=instance
        )
        assert result.success
        run_id = result.run_id
    with psycopg2.connect(dbname=os.environ["SYNTH_PG_DB"], **PG) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **_boto_keys())
    key = f"{tmp_path.name}/profile_rows.parquet"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert pl.read_parquet(io.BytesIO(body))["text"].to_list() == ["alpha", "beta", "gamma"]
    assert not (home / "data").exists(), "production writes nothing to local disk"
    events = [(path, auth, e["eventType"], e["job"]["name"]) for path, auth, e in received]
    assert events == [
        ("/api/v1/lineage", f"Bearer {LINEAGE_TOKEN}", state, "synth.profile_rows")
        for state in ("START", "COMPLETE")
    ]
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for _, _, e in received} == {run_id}
    [tracked] = _mlflow_runs(tmp_path, run_id)
    assert tracked.data.metrics["profile_rows/rows"] == 3


def test_production_switches_turn_lineage_and_tracking_off(
    s3_endpoint, lineage_backend, home, tmp_path, monkeypatch
):
    lineage_url, received = lineage_backend
    for key, value in _production_env(tmp_path, s3_endpoint, lineage_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SYNTH_OPENLINEAGE", "off")
    monkeypatch.setenv("SYNTH_MLFLOW", "off")
    result = dg.materialize(
        [profile_rows],
        resources=production_resources(home),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    metadata = result.asset_materializations_for_node("profile_rows")[0].metadata
    assert metadata["path"].value == f"s3://{BUCKET}/{tmp_path.name}/profile_rows.parquet"
    assert received == []
    assert not (tmp_path / "mlflow.db").exists()
    assert "openlineage_errors" not in metadata and "mlflow_errors" not in metadata


@pytest.mark.parametrize("lineage", ["off", "on"])
def test_local_switches_turn_lineage_and_tracking_off(home, monkeypatch, lineage):
    monkeypatch.setenv("SYNTH_OPENLINEAGE", lineage)
    monkeypatch.setenv("SYNTH_MLFLOW", "off")
    result = dg.materialize(
        [profile_rows],
        resources=local_resources(home),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    events_file = home / "openlineage" / "events.jsonl"
    if lineage == "on":
        states = [json.loads(line)["eventType"] for line in events_file.read_text().splitlines()]
        assert states == ["START", "COMPLETE"]
    else:
        assert not events_file.exists()
    assert not (home / "mlflow").exists()  # MLflow on is shown by the production test


def test_definitions_use_production_resources_under_synth_profile(
    tmp_path, s3_endpoint, lineage_backend
):
    lineage_url, _ = lineage_backend
    probe = (
        "from synth_jobs.definitions import defs\n"
        "io = defs.resources['io_manager']\n"
        "print(io.base_dir, io.lineage.transport, io.tracking.tracking_uri)\n"
    )
    env = {**os.environ, **_production_env(tmp_path, s3_endpoint, lineage_url)}
    production = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert production.returncode == 0, production.stderr
    expected = f"s3://{BUCKET}/{tmp_path.name} http sqlite:///{tmp_path / 'mlflow.db'}"
    assert production.stdout.split("\n")[-2] == expected
