"""dagster-celery for real: two workers on the machine's RabbitMQ (results in Redis) share a
backfill of 8 shards; one is killed with SIGKILL mid-step and the step finishes on the other."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from synth_assets.partitions import SEED_SHARDS
from synth_jobs.fleet import worker_config_yaml
from synth_jobs.profiles import local_resources
from synth_lib.provenance.schema import content_hash
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
SHARDS = [f"ref-n8-{i:05d}" for i in range(8)]
HOLD_SHARD = SHARDS[5]


def _reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def fleet_env(tmp_path, monkeypatch):
    if not (_reachable(5672) and _reachable(6379)):
        pytest.skip("RabbitMQ (5672) and Redis (6379) must run on 127.0.0.1")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "SYNTH_HOME": str(tmp_path / "synth"),
        "SYNTH_CELERY_QUEUE": f"synth-test-{uuid.uuid4().hex[:8]}",
        "SYNTH_CELERY_BACKEND": "redis://127.0.0.1:6379/0",
        "HOLD_SHARD": HOLD_SHARD,
        "HOLD_S": "25",
        "SYNTH_OPENLINEAGE": "off",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "celery.yaml").write_text(worker_config_yaml())
    return tmp_path, env


# A SIGKILLed worker's exclusive pidbox queue stays locked in RabbitMQ until its
# connection times out, so each run names its workers afresh.
RUN_TAG = uuid.uuid4().hex[:8]


def _worker_of(hostname: str) -> str:
    """`w1` from the node name `w1-<run tag>@<host>`."""
    return hostname.split("@")[0].removesuffix(f"-{RUN_TAG}")


def _start_worker(tmp_path: Path, name: str) -> subprocess.Popen:
    queue = os.environ["SYNTH_CELERY_QUEUE"]
    cli = [
        str(Path(sys.executable).with_name("dagster-celery")),
        "worker", "start", "-A", "dagster_celery.app", "-y", str(tmp_path / "celery.yaml"),
        "-q", queue, "--name", f"{name}-{RUN_TAG}", "--", "--concurrency", "1",
    ]  # fmt: skip
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen(
        cli, cwd=REPO_ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )


def _job(name: str):
    repo = ReconstructableRepository.for_module(
        "tests.celery_defs", "defs", working_directory=str(REPO_ROOT)
    )
    return repo.get_reconstructable_job(name)


def _placements(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key → the Celery workers that started it, from the run's engine events."""
    placed: dict[str, list[str]] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    for record in records.records:
        entry = record.event_log_entry
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        worker = data.metadata.get("Celery worker") if data else None
        if worker is not None:
            placed.setdefault(entry.step_key, []).append(worker.value)
    return placed


def _hashes(home: Path) -> dict[str, str]:
    return {
        p.stem: content_hash(pl.read_parquet(p))
        for p in sorted((home / "data" / "passage_lengths").glob("*.parquet"))
    }


def _kill_when_started(instance, workers) -> str | None:
    """SIGKILL the worker running HOLD_SHARD's slow step; returns its name."""
    for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": HOLD_SHARD})):
        for worker in _placements(instance, run.run_id).get("passage_lengths", []):
            name = _worker_of(worker)
            os.killpg(workers[name].pid, signal.SIGKILL)
            return name
    return None


def test_backfill_spreads_over_two_workers_and_survives_a_killed_one(fleet_env):
    tmp_path, env = fleet_env
    with dg.DagsterInstance.get() as instance:  # its SQLite schema, before the workers open it
        instance.add_dynamic_partitions(SEED_SHARDS, SHARDS)
    workers = {name: _start_worker(tmp_path, name) for name in ("w1", "w2")}
    try:
        with dg.DagsterInstance.get() as instance:
            killed: list[str] = []

            def watch() -> None:
                with dg.DagsterInstance.get() as watcher:
                    deadline = time.time() + 400
                    while not killed and time.time() < deadline:
                        name = _kill_when_started(watcher, workers)
                        if name:
                            killed.append(name)
                        time.sleep(0.5)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            results = {}
            for shard in SHARDS:
                dead = [n for n, w in workers.items() if w.poll() is not None and n not in killed]
                assert not dead, f"worker {dead} exited: see {tmp_path}/{dead[0]}.log"
                tags = {"dagster/partition": shard}
                with dg.execute_job(_job("synth_shards_fleet"), instance, tags=tags) as result:
                    results[shard] = (result.success, result.run_id)
            watcher.join(5)
            assert killed, "the slow step never started"
            killed = killed[0]
            assert all(ok for ok, _ in results.values()), results
            placed = {
                shard: _placements(instance, run_id) for shard, (_, run_id) in results.items()
            }
        workers_used = {_worker_of(w) for p in placed.values() for ws in p.values() for w in ws}
        assert workers_used == {"w1", "w2"}, placed
        survivor = ({"w1", "w2"} - {killed}).pop()
        slow = [_worker_of(w) for w in placed[HOLD_SHARD]["passage_lengths"]]
        assert slow[0] == killed and slow[-1] == survivor, slow
        print(f"\nplacement: {placed}\nkilled: {killed}; slow step on: {slow}")
        data = Path(env["SYNTH_HOME"]) / "data" / "passage_lengths"
        assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]
        fleet_hashes = _hashes(Path(env["SYNTH_HOME"]))
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
    os.environ["HOLD_S"] = "0"
    from tests import celery_defs  # imported once the fleet settings are in the environment

    single = tmp_path / "single"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SEED_SHARDS, SHARDS)
    for shard in SHARDS:
        result = dg.materialize(
            celery_defs.ASSETS,
            partition_key=shard,
            instance=instance,
            resources=local_resources(single),
        )
        assert result.success
    assert fleet_hashes == _hashes(single) and len(fleet_hashes) == 8
