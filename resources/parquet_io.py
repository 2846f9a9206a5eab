"""Polars DataFrames as Parquet files or S3 objects, one per asset (and partition), atomically.

A partitioned asset (a seed shard) is one file per shard. A downstream asset that reads
every shard of it at once gets, by its input's type annotation, a `dict[str, pl.LazyFrame]`
(shard key → lazy scan, for incremental steps), a `pl.LazyFrame` over all of them, or a
`pl.DataFrame`; only shards that have been materialized are read.

Every materialization path (dg.materialize, `dagster job execute`, UI launches) ends in
`handle_output`, so this is where each written asset is reported: OpenLineage START and
COMPLETE events and the MLflow run of the Dagster run. Reporting never fails a
materialization: errors are logged as warnings and counted in the output metadata.
Steps that raise before writing are reported by `lineage_failure_hook`; assets of a failed
run that no step reported are sent FAIL by `synth_jobs.lineage_sensors` through `emit_failed`.
"""

import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

from resources.lineage import OpenLineageEmitter
from resources.object_store import LocalFolder, S3Prefix, S3Storage, open_store
from resources.tracking import MlflowTracking
from synth_lib.lineage.openlineage_events import (
    InputSnapshot,
    RunRef,
    RunState,
    input_dataset,
    output_dataset,
    run_event,
)
from synth_lib.lineage.tracking_values import Markdown, tracked_values

_PLAIN_METADATA = (
    dg.IntMetadataValue,
    dg.FloatMetadataValue,
    dg.BoolMetadataValue,
    dg.TextMetadataValue,
    dg.JsonMetadataValue,
    dg.PathMetadataValue,
    dg.UrlMetadataValue,
)


# an input whose upstream may never have been materialized reads as an empty frame:
# `dg.AssetIn(metadata={OPTIONAL_INPUT: True})`
OPTIONAL_INPUT = "synth/optional"


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset at `<base_dir>/<asset key path>[/<partition>].parquet`.

    Local writes go to a temporary file in the same folder and are renamed into place, S3
    writes are one PUT: either way a worker killed mid-write never leaves half a file.
    """

    base_dir: str = Field(
        description="Folder that holds one Parquet file per asset, or s3://bucket/prefix."
    )
    s3: S3Storage | None = Field(
        default=None,
        description="Object store of an s3:// base_dir (None: boto3 defaults, AWS S3).",
    )
    lineage: OpenLineageEmitter | None = Field(
        default=None, description="Where OpenLineage events of each write go (None: nowhere)."
    )
    tracking: MlflowTracking | None = Field(
        default=None, description="MLflow tracking of each write's metadata (None: none)."
    )

    _store: LocalFolder | S3Prefix | None = PrivateAttr(default=None)

    @property
    def _where(self) -> LocalFolder | S3Prefix:
        """Where bytes go; opened once (an S3 client per IO manager, not per asset)."""
        if self._store is None:
            self._store = open_store(self.base_dir, self.s3)
        return self._store

    @property
    def _lineage_on(self) -> bool:
        return self.lineage is not None and self.lineage.enabled

    @property
    def _tracking_on(self) -> bool:
        return self.tracking is not None and self.tracking.enabled

    def _key_path(self, key: dg.AssetKey, partition: str | None = None) -> str:
        return self._where.location(key.path, partition)

    def _path(self, context: dg.OutputContext | dg.InputContext) -> str:
        if context.has_asset_partitions:
            return self._key_path(context.asset_key, context.asset_partition_key)
        return self._key_path(context.asset_key)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        """Write the asset's frame; a LazyFrame is streamed (`sink_parquet`), never collected,
        and its lineage event names the dataset without the facets that read every row."""
        if obj is None:
            return
        started = (_step_started_at(context) if self._lineage_on else None) or datetime.now(UTC)
        path = self._path(context)
        size = self._where.write(path, obj)
        frame = None if isinstance(obj, pl.LazyFrame) else obj
        context.add_output_metadata({"path": dg.MetadataValue.path(path)})
        context.add_output_metadata(self._report(context, frame, path, size, started))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | dict:
        if context.has_asset_partitions and (
            _wants_shards(context) or len(context.asset_partition_keys) != 1
        ):
            run_shard = _run_partition(context)
            if _wants_shards(context) or run_shard not in context.asset_partition_keys:
                return self._load_partitions(context)
            # an asset check of a shard run: its shard only, not every shard of the asset
            path = self._key_path(context.asset_key, run_shard)
        else:
            path = self._path(context)
        try:
            return self._where.read(path)
        except FileNotFoundError:
            if context.definition_metadata.get(OPTIONAL_INPUT):
                context.log.info(f"{path}: optional input not materialized yet, read as empty")
                return pl.DataFrame()
            raise FileNotFoundError(
                f"{path}: upstream asset {context.asset_key.to_user_string()} has not been "
                "materialized yet"
            ) from None

    def _load_partitions(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame | dict:
        """Every materialized shard of a partitioned upstream, scanned lazily."""
        scans = {}
        for key in sorted(context.asset_partition_keys):
            path = self._key_path(context.asset_key, key)
            if self._where.exists(path):
                scans[key] = self._where.scan(path)
        wanted = context.dagster_type.typing_type
        if _is_dict(wanted):
            return scans
        lazy = pl.concat(list(scans.values()), how="diagonal_relaxed") if scans else pl.LazyFrame()
        return lazy if wanted is pl.LazyFrame else lazy.collect()

    def _report(
        self,
        context: dg.OutputContext,
        frame: pl.DataFrame | None,
        path: str,
        size: int,
        started: datetime,
    ) -> dict[str, Any]:
        """Lineage events and tracking for one written asset; returns figures for metadata."""
        metadata = {**context.definition_metadata, **context.output_metadata}
        report: dict[str, Any] = {}
        if self._lineage_on:
            try:
                report |= self._emit_lineage(context, frame, path, size, started, metadata)
            except Exception as exc:
                context.log.warning(f"OpenLineage events for {context.asset_key} failed: {exc!r}")
                report["openlineage_errors"] = 2
        if self._tracking_on:
            report |= self._track(context, metadata)
        return report

    def _ref(self, run_id: str, job_name: str, key: str, partition: str | None) -> RunRef:
        return RunRef(
            dagster_run_id=run_id,
            dagster_job=job_name,
            asset_key=key,
            partition=partition,
            namespace=self.lineage.namespace,
            producer=self.lineage.producer,
        )

    def _emit_lineage(
        self,
        context: dg.OutputContext,
        frame: pl.DataFrame | None,
        path: str,
        size: int,
        started: datetime,
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        key = context.asset_key.to_user_string()
        partition = context.asset_partition_key if context.has_asset_partitions else None
        ref = self._ref(context.run_id, context.job_name, key, partition)
        errors = 0
        inputs: list[InputSnapshot] = []
        written = output_dataset(path)
        try:
            inputs = self._input_snapshots(context)
            written = output_dataset(
                path,
                frame,
                size_bytes=size,
                inputs=inputs,
                declared_lineage=self._declared_lineage(metadata, partition),
                producer=ref.producer,
            )
        except Exception as exc:
            context.log.warning(f"OpenLineage facets for {key} failed: {exc!r}")
            errors += 1
        start = run_event(
            ref,
            RunState.START,
            started,
            inputs=[input_dataset(InputSnapshot(s.location)) for s in inputs],
            outputs=[output_dataset(path)],
        )
        complete = run_event(
            ref,
            RunState.COMPLETE,
            datetime.now(UTC),
            inputs=[input_dataset(s, ref.producer) for s in inputs],
            outputs=[written],
        )
        for event in (start, complete):
            try:
                self.lineage.emit(event)
            except Exception as exc:
                context.log.warning(
                    f"OpenLineage {event.eventType.value} for {key} not sent: {exc!r}"
                )
                errors += 1
        return {"openlineage_run_id": ref.run_id, "openlineage_errors": errors}

    def _track(self, context: dg.OutputContext, metadata: Mapping[str, Any]) -> dict[str, Any]:
        key = context.asset_key.to_user_string()
        label = f"{key}/{context.asset_partition_key}" if context.has_asset_partitions else key
        try:
            plain = {**_plain_metadata(metadata), "code_version": context.asset_spec.code_version}
            run_id = self.tracking.record(
                context.run_id, context.job_name, tracked_values(label, plain)
            )
        except Exception as exc:
            context.log.warning(f"MLflow tracking of {key} failed: {exc!r}")
            return {"mlflow_errors": 1}
        return {"mlflow_run_id": run_id, "mlflow_errors": 0}

    def _input_snapshots(self, context: dg.OutputContext) -> list[InputSnapshot]:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        return self._snapshots([dep.asset_key for dep in context.asset_spec.deps], partition)

    def _snapshots(self, keys: Sequence[dg.AssetKey], partition: str | None) -> list[InputSnapshot]:
        """Upstream assets as this IO manager stores them: schema and ids when readable."""
        snapshots = []
        for key in keys:
            path = self._dep_path(key, partition)
            peek = self._where.peek(path, "id")
            if peek is None:
                snapshots.append(InputSnapshot(path.removesuffix(".parquet")))
                continue
            snapshots.append(InputSnapshot(path, *peek))
        return snapshots

    def _declared_lineage(
        self, metadata: Mapping[str, Any], partition: str | None = None
    ) -> dict[str, list[tuple[str, str]]] | None:
        value = metadata.get("dagster/column_lineage")
        lineage = value.value if isinstance(value, dg.TableColumnLineageMetadataValue) else value
        if not isinstance(lineage, dg.TableColumnLineage):
            return None
        return {
            column: [(self._dep_path(dep.asset_key, partition), dep.column_name) for dep in deps]
            for column, deps in lineage.deps_by_column.items()
        }

    def _dep_path(self, key: dg.AssetKey, partition: str | None) -> str:
        """An upstream's file: the same shard when there is one, else the whole asset."""
        path = self._key_path(key, partition)
        return path if partition and self._where.exists(path) else self._key_path(key)

    def report_failure(self, context: dg.HookContext) -> None:
        """START + FAIL for each asset of a failed step that was not written; run FAILED."""
        exc = context.op_exception
        message = f"{type(exc).__name__}: {exc}" if exc else f"step {context.step_key} failed"
        stack = "".join(traceback.format_exception(exc)) if exc else ""
        if self._lineage_on:
            try:
                self._emit_failure(context, message, stack)
            except Exception as exc_emit:
                context.log.warning(f"OpenLineage FAIL events not sent: {exc_emit!r}")
        if self._tracking_on:
            try:
                self.tracking.record_failure(
                    context.run_id, context.job_name, context.step_key, message
                )
            except Exception as exc_track:
                context.log.warning(f"MLflow failure tracking not recorded: {exc_track!r}")

    def _emit_failure(self, context: dg.HookContext, message: str, stack: str) -> None:
        started = _first_event_time(
            context.instance, context.run_id, context.step_key, dg.DagsterEventType.STEP_START
        )
        upstream = _upstream_keys(context)
        failed = [(key, part, upstream(key)) for key, part in _unwritten_assets(context)]
        self.emit_failed(
            context.run_id,
            context.job_name,
            failed,
            (message, stack),
            started or datetime.now(UTC),
        )

    def emit_failed(
        self,
        run_id: str,
        job_name: str,
        failed: Sequence[tuple[dg.AssetKey, str | None, Sequence[dg.AssetKey]]],
        error: tuple[str, str],
        started: datetime | None = None,
    ) -> int:
        """FAIL (after a START when the step `started`) for each (asset, partition, upstream
        keys) of `failed`, listing its inputs; returns the FAIL events sent."""
        if not self._lineage_on:
            return 0
        for key, partition, upstream in failed:
            ref = self._ref(run_id, job_name, key.to_user_string(), partition)
            output = output_dataset(self._key_path(key, partition))
            inputs = self._snapshots(upstream, partition)
            if started is not None:
                names = [input_dataset(InputSnapshot(s.location)) for s in inputs]
                self.lineage.emit(
                    run_event(ref, RunState.START, started, inputs=names, outputs=[output])
                )
            self.lineage.emit(
                run_event(
                    ref,
                    RunState.FAIL,
                    datetime.now(UTC),
                    inputs=[input_dataset(s, ref.producer) for s in inputs],
                    outputs=[output],
                    error=error,
                )
            )
        return len(failed)


@dg.failure_hook(required_resource_keys={"io_manager"})
def lineage_failure_hook(context: dg.HookContext) -> None:
    """Report a failed step through the IO manager (FAIL events, MLflow run FAILED)."""
    report = getattr(context.resources.io_manager, "report_failure", None)
    if report is not None:
        report(context)


def _run_partition(context: dg.InputContext) -> str | None:
    """The partition of the run this input is loaded in (None outside a one-partition run)."""
    try:
        return context.step_context.dagster_run.tags.get("dagster/partition")
    except Exception:
        return None


def _is_dict(annotation: Any) -> bool:
    return annotation is dict or getattr(annotation, "__origin__", None) is dict


def _wants_shards(context: dg.InputContext) -> bool:
    """An input annotated as shard scans (dict) or one lazy scan reads every shard."""
    wanted = context.dagster_type.typing_type
    return _is_dict(wanted) or wanted is pl.LazyFrame


def _plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata values as plain Python; Markdown kept apart; tables and schemas dropped."""
    plain: dict[str, Any] = {}
    for name, value in metadata.items():
        if isinstance(value, dg.MarkdownMetadataValue):
            plain[name] = Markdown(value.value)
        elif isinstance(value, _PLAIN_METADATA):
            plain[name] = value.value
        elif isinstance(value, int | float | str | bool | dict | list):
            plain[name] = value
    return plain


def _first_event_time(
    instance: dg.DagsterInstance, run_id: str, step_key: str, event_type: dg.DagsterEventType
) -> datetime | None:
    records = instance.get_records_for_run(run_id, of_type=event_type).records
    times = [r.timestamp for r in records if r.event_log_entry.step_key == step_key]
    return datetime.fromtimestamp(min(times), UTC) if times else None


def _step_started_at(context: dg.OutputContext) -> datetime | None:
    """When the step began (its STEP_START event); None outside a run, e.g. in unit tests."""
    try:
        return _first_event_time(
            context.step_context.instance,
            context.run_id,
            context.step_key,
            dg.DagsterEventType.STEP_START,
        )
    except Exception:
        return None


def _upstream_keys(context: dg.HookContext) -> Callable[[dg.AssetKey], list[dg.AssetKey]]:
    """Upstream keys of an asset in the failed step's job. A HookContext does not expose the
    job's asset graph publicly, its step context does; no inputs where that cannot be read."""
    try:
        graph = context._step_execution_context.job_def.asset_layer.asset_graph
    except AttributeError:
        return lambda key: []
    return lambda key: sorted(graph.get(key).parent_keys, key=lambda k: k.to_user_string())


def _unwritten_assets(context: dg.HookContext) -> list[tuple[dg.AssetKey, str | None]]:
    """Assets the failed step planned to materialize and did not."""
    events = context.instance.get_records_for_run
    planned = events(context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    written = events(context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    done = {r.asset_key for r in written.records if r.event_log_entry.step_key == context.step_key}
    unwritten = []
    for record in planned.records:
        entry = record.event_log_entry
        if entry.step_key == context.step_key and record.asset_key not in done:
            data = entry.dagster_event.event_specific_data if entry.dagster_event else None
            unwritten.append((record.asset_key, getattr(data, "partition", None)))
    return unwritten
