"""The production instance config (dagster.production.yaml) against a real PostgreSQL."""

import os
import shutil
import uuid

import dagster as dg
import pytest

from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from tests import environment
from tests.conftest import REPO_ROOT

try:
    import psycopg2
except ImportError as exc:  # the test below reports it: skip, or fail when required
    psycopg2 = None
    PSYCOPG2_ERROR = str(exc)
PG = {"host": os.environ.get("SYNTH_TEST_PG_HOST", "127.0.0.1"), "user": "postgres", "port": 5432}


@pytest.fixture
def postgres_db():
    if psycopg2 is None:
        environment.missing("postgres", f"psycopg2 is not importable ({PSYCOPG2_ERROR})")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        environment.missing("postgres", f"no PostgreSQL at {PG['host']}:5432 ({exc})")
    admin.autocommit = True
    name = f"synth_test_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield name
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_runs_and_events_land_in_postgres(postgres_db, synth_home, tmp_path, monkeypatch):
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
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = dg.materialize(
            all_assets,
            selection=["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"],
            resources=local_resources(synth_home),
            instance=instance,
            run_config={"ops": {"seeds": {"config": {"gsm8k_path": ""}}}},
        )
        assert result.success
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        latest = instance.get_latest_materialization_event(dg.AssetKey("text_seeds"))
        assert latest is not None and latest.run_id == result.run_id
    with psycopg2.connect(dbname=postgres_db, **PG) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "SELECT COUNT(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (result.run_id, "ASSET_MATERIALIZATION"),
        )
        assert cur.fetchone()[0] == 4
