"""OpenLineage FAIL for the assets of a failed run that no failed step reported.

`lineage_failure_hook` reports the assets of a step that raised. A run can also fail where no
hook runs: a step whose upstream failed is skipped, a run worker is killed, a step process
crashes, a resource fails to start. Without this sensor those assets would have no FAIL
event at all, and a lineage backend would show them as never attempted.
"""

import dagster as dg

from resources.parquet_io import PolarsParquetIOManager

Failed = tuple[dg.AssetKey, str | None, list[dg.AssetKey]]


def _records(context: dg.RunFailureSensorContext, event_type: dg.DagsterEventType) -> list:
    instance, run_id = context.instance, context.dagster_run.run_id
    return instance.get_records_for_run(run_id, of_type=event_type).records


def unreported_assets(context: dg.RunFailureSensorContext) -> list[Failed]:
    """(asset, partition, upstream keys) the run planned, did not materialize, and whose step
    did not run the failure hook (a hook that ran has sent FAIL already)."""
    written = {r.asset_key for r in _records(context, dg.DagsterEventType.ASSET_MATERIALIZATION)}
    hooked = {
        r.event_log_entry.step_key for r in _records(context, dg.DagsterEventType.HOOK_COMPLETED)
    }
    graph = context.repository_def.asset_graph if context.repository_def else None
    failed: list[Failed] = []
    for record in _records(context, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        entry = record.event_log_entry
        if record.asset_key in written or entry.step_key in hooked:
            continue
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        upstream = []
        if graph is not None and graph.has(record.asset_key):
            upstream = sorted(graph.get(record.asset_key).parent_keys, key=dg.AssetKey.to_string)
        failed.append((record.asset_key, getattr(data, "partition", None), upstream))
    return failed


def _error(context: dg.RunFailureSensorContext) -> tuple[str, str]:
    """The run's failure message, and the run's and failed steps' errors as the stack trace."""
    message = context.failure_event.message or f"run {context.dagster_run.run_id} failed"
    events = [context.failure_event, *context.get_step_failure_events()]
    errors = [
        error.to_string()
        for event in events
        if (error := getattr(event.event_specific_data, "error", None)) is not None
    ]
    return message, "\n".join(errors)


@dg.run_failure_sensor(
    name="openlineage_run_failures",
    description="OpenLineage FAIL, listing its inputs, for every asset a failed run planned "
    "and did not materialize, where no failed step reported it.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def openlineage_run_failures(
    context: dg.RunFailureSensorContext, io_manager: PolarsParquetIOManager
) -> dg.SkipReason:
    failed = unreported_assets(context)
    try:
        sent = io_manager.emit_failed(
            context.dagster_run.run_id, context.dagster_run.job_name, failed, _error(context)
        )
    except Exception as exc:
        # lineage never fails anything; the sensor's tick log says what was lost
        return dg.SkipReason(f"OpenLineage FAIL events not sent: {exc!r}")
    return dg.SkipReason(f"sent FAIL for {sent} of {len(failed)} unreported assets")
