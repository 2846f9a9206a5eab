"""Shard runs on a fleet of boxes: the dagster-celery executor over RabbitMQ, Redis for results.

Every step of a `synth_shards_fleet` run is a Celery task; any worker started with

    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q dagster

(with the same code, DAGSTER_HOME instance and shared stores) can take it; steps that
call the engine carry the `dagster-celery/queue: gpu` op tag (`GPU_STEP`) and go only to
workers started with `-q gpu`. A task is
acknowledged only when it has finished (`task_acks_late`) and is handed back when its
worker dies (`task_reject_on_worker_lost`), so a worker killed mid-step loses nothing:
the broker gives the step to another worker, which re-runs it from its inputs (outputs are
written atomically; engine answers come from the shared response cache).

Settings: SYNTH_CELERY_BROKER (default `pyamqp://guest@127.0.0.1:5672//`),
SYNTH_CELERY_BACKEND (default `redis://127.0.0.1:6379/0`), SYNTH_CELERY_QUEUE (default
`dagster`). `python -m synth_jobs.fleet` prints the workers' config file.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import dagster as dg
import yaml
from dagster_celery import celery_executor

from synth_assets.partitions import seed_shards

FLEET_JOB = "synth_shards_fleet"


def fleet_config() -> dict[str, Any]:
    """The executor's config: broker, result backend and the Celery settings that matter."""
    return {
        "broker": os.environ.get("SYNTH_CELERY_BROKER", "pyamqp://guest@127.0.0.1:5672//"),
        "backend": os.environ.get("SYNTH_CELERY_BACKEND", "redis://127.0.0.1:6379/0"),
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_default_queue": os.environ.get("SYNTH_CELERY_QUEUE", "dagster"),
            "broker_connection_retry_on_startup": True,
        },
    }


def fleet_job(selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    """The per-shard stages with every step a Celery task."""
    return dg.define_asset_job(
        FLEET_JOB,
        selection=selection,
        partitions_def=seed_shards,
        executor_def=celery_executor.configured(fleet_config(), name="synth_celery"),
        description="The per-shard stages, each step a task for any Celery worker of the fleet.",
    )


def worker_config_yaml() -> str:
    """What `dagster-celery worker start -y` reads: the same settings as the executor."""
    return yaml.safe_dump({"execution": {"config": fleet_config()}}, sort_keys=False)


if __name__ == "__main__":
    sys.stdout.write(worker_config_yaml())
