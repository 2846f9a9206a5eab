"""MLflow tracking as a ConfigurableResource: one MLflow run per Dagster run.

`dagster-mlflow` ships a function-style resource only; this one is config-only and used
by the Parquet IO manager, which logs each asset's metadata after writing it. The MLflow
run is found again by its `dagster_run_id` tag, so every step of a Dagster run (each in
its own process under the multiprocess executor) logs into the same MLflow run.
MLflow is imported on first use: it costs seconds, and disabled tracking should not pay.
"""

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from synth_lib.lineage.tracking_values import TrackedValues, canonical_run, run_filter, tracking_key

_BATCH_METRICS = 1000
_BATCH_PARAMS = 100


def default_tracking_uri() -> str:
    """SQLite under `$SYNTH_HOME/mlflow` (MLflow 3 refuses new file stores without an opt-out)."""
    home = Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth")).resolve()
    return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


class MlflowTracking(dg.ConfigurableResource):
    """Logs asset metadata as metrics, params and Markdown artifacts of the Dagster run's run."""

    enabled: bool = Field(default=True, description="Log to MLflow at all.")
    tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI: sqlite:///path/mlflow.db locally, http(s)://server in "
        "production (credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/"
        "PASSWORD in the environment). Empty: sqlite under $SYNTH_HOME/mlflow.",
    )
    experiment_name: str = Field(default="synth", description="Experiment the runs go into.")
    artifact_location: str = Field(
        default="",
        description="Artifact root of a newly created experiment. Empty: `artifacts` beside a "
        "local SQLite store, the server's default otherwise.",
    )

    _client: Any = PrivateAttr(default=None)
    _experiment_id: str | None = PrivateAttr(default=None)
    _runs: dict[str, str] = PrivateAttr(default_factory=dict)

    def _resolved_uri(self) -> str:
        return self.tracking_uri or default_tracking_uri()

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            uri = self._resolved_uri()
            if not uri.startswith("sqlite:///"):
                self._client = MlflowClient(tracking_uri=uri)
                return self._client
            db = Path(uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            # Step processes start together; two creating the schema at once corrupt it.
            with open(db.with_name(db.name + ".init-lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                client = MlflowClient(tracking_uri=uri)
                client.search_experiments(max_results=1)
            self._client = client
        return self._client

    def _experiment(self) -> str:
        if self._experiment_id is None:
            client = self._mlflow()
            found = client.get_experiment_by_name(self.experiment_name)
            if found is None:
                try:
                    self._experiment_id = client.create_experiment(
                        self.experiment_name, artifact_location=self._artifact_root()
                    )
                except Exception:
                    # another step's process created it first
                    found = client.get_experiment_by_name(self.experiment_name)
                    if found is None:
                        raise
            if found is not None:
                self._experiment_id = found.experiment_id
        return self._experiment_id

    def _artifact_root(self) -> str | None:
        if self.artifact_location:
            return self.artifact_location
        uri = self._resolved_uri()
        if uri.startswith("sqlite:///"):
            return Path(uri.removeprefix("sqlite:///")).parent.joinpath("artifacts").as_uri()
        return None

    def run_id_for(self, dagster_run_id: str, job_name: str) -> str:
        """The MLflow run of `dagster_run_id`, created on first use."""
        if dagster_run_id in self._runs:
            return self._runs[dagster_run_id]
        client, experiment = self._mlflow(), self._experiment()

        def candidates() -> list[tuple[int, str]]:
            runs = client.search_runs([experiment], filter_string=run_filter(dagster_run_id))
            return [(r.info.start_time, r.info.run_id) for r in runs]

        chosen = canonical_run(candidates())
        if chosen is None:
            created = client.create_run(
                experiment,
                run_name=f"{job_name}-{dagster_run_id[:8]}",
                tags={"dagster_run_id": dagster_run_id, "dagster_job": job_name},
            ).info.run_id
            # a step in another process may have created one at the same moment: keep the oldest
            chosen = canonical_run(candidates()) or created
            if chosen != created:
                client.delete_run(created)
        self._runs[dagster_run_id] = chosen
        return chosen

    def record(self, dagster_run_id: str, job_name: str, values: TrackedValues) -> str:
        """Log one asset's values; the run stays FINISHED unless a step already failed it."""
        from mlflow.entities import Metric, Param

        client = self._mlflow()
        run_id = self.run_id_for(dagster_run_id, job_name)
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, 0) for key, value in values.metrics.items()]
        params = [Param(key, value) for key, value in values.params.items()]
        for start in range(0, len(metrics), _BATCH_METRICS):
            client.log_batch(run_id, metrics=metrics[start : start + _BATCH_METRICS])
        for start in range(0, len(params), _BATCH_PARAMS):
            client.log_batch(run_id, params=params[start : start + _BATCH_PARAMS])
        for path, text in values.texts.items():
            client.log_text(run_id, text, path)
        if client.get_run(run_id).info.status != "FAILED":
            client.set_terminated(run_id, "FINISHED")
        return run_id

    def record_failure(
        self, dagster_run_id: str, job_name: str, step_key: str, message: str
    ) -> str:
        """Mark the run FAILED and say which step failed and why."""
        client = self._mlflow()
        run_id = self.run_id_for(dagster_run_id, job_name)
        client.set_tag(run_id, tracking_key("failed_step", step_key), message[:8000])
        client.set_terminated(run_id, "FAILED")
        return run_id
