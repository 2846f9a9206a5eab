"""A run killed with SIGKILL mid-step must not keep its `gpu` pool slot from the next run."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from synth_jobs.dead_runs import PidCheckedRunLauncher, free_dead_runs, run_is_dead
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

CODE = textwrap.dedent(
    """
    import os, time
    import dagster as dg

    @dg.asset(pool="gpu")
    def gpu_step() -> None:
        deadline = time.time() + float(os.environ.get("HOLD_S", "0"))
        while time.time() < deadline:
            time.sleep(0.2)

    defs = dg.Definitions(assets=[gpu_step], jobs=[dg.define_asset_job("gpu_job", "*")])
    """
)


def _dagster(home: Path, code: Path, hold_s: float, **popen) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "HOLD_S": str(hold_s)}
    cli = [sys.executable, "-m", "dagster", "job", "execute", "-f", str(code), "-j", "gpu_job"]
    return subprocess.Popen(cli, env=env, cwd=code.parent, start_new_session=True, **popen)


def _wait_for_step(instance: dg.DagsterInstance, timeout: float = 60) -> dg.DagsterRun:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in instance.get_runs():
            started = instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_START
            ).records
            if started:
                return run
        time.sleep(0.3)
    raise AssertionError("the step never started")


def test_a_killed_run_frees_its_slot_and_the_next_run_completes(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    code = tmp_path / "gpu_defs.py"
    code.write_text(CODE)
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            first = _dagster(home, code, hold_s=120, stdout=subprocess.DEVNULL)
            run = _wait_for_step(instance)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
            claimed = instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
            assert [c.run_id for c in claimed] == [run.run_id], "the dead run holds the slot"
            assert run_is_dead(instance, instance.get_run_by_id(run.run_id))
            launcher = PidCheckedRunLauncher()
            launcher.register_instance(instance)
            health = launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
            assert health.status.value == "FAILED"

            freed = free_dead_runs(instance)
            assert [f.run_id for f in freed] == [run.run_id]
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots

            second = _dagster(home, code, hold_s=0, stdout=subprocess.PIPE, text=True)
            out, _ = second.communicate(timeout=120)
            assert second.returncode == 0, out[-2000:]
            statuses = sorted(r.status.value for r in instance.get_runs())
            assert statuses == ["FAILURE", "SUCCESS"]
            assert free_dead_runs(instance) == [], (
                "a finished, healthy instance has nothing to free"
            )
    finally:
        os.environ.pop("DAGSTER_HOME", None)
