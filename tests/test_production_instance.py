"""The production instance config (dagster.production.yaml) against a real PostgreSQL."""

import dagster as dg

from synth_assets.partitions import SEED_SHARDS
from synth_jobs.definitions import all_assets
from synth_jobs.profiles import local_resources
from tests.conftest import PG

SHARD = "ref-n64-00000"


def test_runs_and_events_land_in_postgres(postgres_db, production_instance_env, synth_home):
    import psycopg2  # importable: the postgres_db fixture skips (or fails) otherwise

    dagster_home = production_instance_env
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions(SEED_SHARDS, [SHARD])
        result = dg.materialize(
            all_assets,
            selection=["text_seeds", "code_seeds", "math_seeds", "seed_quarantine"],
            resources=local_resources(synth_home),
            instance=instance,
            partition_key=SHARD,
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
