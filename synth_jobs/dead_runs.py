"""Runs whose process died (SIGKILL, OOM, a lost node) must not keep their pool slots.

A run killed with SIGKILL never reports its end: the instance keeps it STARTED and its
`gpu` slot claimed, and every later run waits for that slot forever. Two ways out:

- `free_dead_runs(instance)`: a sweep `make run` does before it starts anything. A run of
  this machine (tag `synth/host`, or any run of a local SQLite instance, which only one
  machine can use) that is still in progress but whose run worker and step processes are
  all gone is marked failed; then every slot held by a finished run is freed.
- `PidCheckedRunLauncher`: the default launcher plus a worker health check, so the daemon's
  run monitoring (`run_monitoring` in dagster.yaml) finds the same dead runs, fails them,
  and frees their slots after `free_slots_after_run_end_seconds`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.runs.sqlite import SqliteRunStorage

HOST_TAG = "synth/host"
_PROCESS_EVENTS = (
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.ENGINE_EVENT,
    dg.DagsterEventType.STEP_WORKER_STARTED,
)


@dataclass(frozen=True)
class FreedRun:
    """A run the sweep acted on: failed because its processes were gone, or slots freed."""

    run_id: str
    reason: str


def this_host() -> str:
    return socket.gethostname()


def run_pids(instance: dg.DagsterInstance, run_id: str) -> list[tuple[int, float]]:
    """(pid, time it was recorded) of the run worker and step processes of a run."""
    found: dict[int, float] = {}
    for event_type in _PROCESS_EVENTS:
        for record in instance.get_records_for_run(run_id, of_type=event_type).records:
            event = record.event_log_entry.dagster_event
            if event is not None and event.pid:
                found.setdefault(event.pid, record.timestamp)
    return sorted(found.items())


def process_alive(pid: int, seen_at: float) -> bool:
    """True if `pid` is running and started before it was recorded (not a reused pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= seen_at + 1
    except psutil.Error:
        return False


def run_is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool | None:
    """Whether every process of an in-progress run of this machine is gone (None: can't tell)."""
    pids = run_pids(instance, run.run_id)
    if not pids:
        return None
    return not any(process_alive(pid, seen_at) for pid, seen_at in pids)


def _is_local(instance: dg.DagsterInstance, run: dg.DagsterRun, host: str) -> bool:
    """A run of this machine: its host tag says so, or the instance is a local SQLite one."""
    if HOST_TAG in run.tags:
        return run.tags[HOST_TAG] == host
    return isinstance(instance.run_storage, SqliteRunStorage)


def free_dead_runs(instance: dg.DagsterInstance, host: str | None = None) -> list[FreedRun]:
    """Fail this machine's runs whose processes died; free every slot of a finished run."""
    host = host or this_host()
    acted: list[FreedRun] = []
    in_progress = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS_RUN_STATUSES))
    for run in in_progress:
        if _is_local(instance, run, host) and run_is_dead(instance, run):
            instance.report_run_failed(
                run, "run worker process is gone (killed or crashed): marked failed by synth"
            )
            _free(instance, run.run_id)
            acted.append(FreedRun(run.run_id, "process gone: marked failed"))
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return acted
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is None or run.status in FINISHED_STATUSES:
            _free(instance, run_id)
            acted.append(FreedRun(run_id, "finished or deleted run still held pool slots"))
    return acted


def _free(instance: dg.DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


class PidCheckedRunLauncher(DefaultRunLauncher):
    """The default launcher, with a run worker health check for the daemon's run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        dead = run_is_dead(self._instance, run)
        if dead:
            return CheckRunHealthResult(WorkerStatus.FAILED, "run worker process is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING if dead is False else WorkerStatus.UNKNOWN)
