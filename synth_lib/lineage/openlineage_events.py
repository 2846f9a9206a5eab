"""OpenLineage run events for one asset materialization, built from the written DataFrame.

Pure: no Dagster import, so the event shapes are unit-testable and any runner (Dagster, a
GPU box, a notebook) can emit the same events. One asset materialization is one
OpenLineage run of the job `synth.<asset key>`; its run id is derived from the Dagster run
id, asset key and partition, so START, COMPLETE and FAIL of one materialization always
share it, and the Dagster run is the parent run. Every event and facet names the repository's
URL (`[project.urls]` in pyproject) as its producer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import attr
import polars as pl
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    column_lineage_dataset,
    data_quality_metrics_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

from synth_lib.provenance.schema import PROVENANCE_COLUMNS, content_hash

DEFAULT_NAMESPACE = "synth"
FALLBACK_PRODUCER = "urn:synth:code-location"
# the labels pyproject's [project.urls] may give the source repository, best first
_REPOSITORY_LABELS = ("repository", "source", "source code", "homepage")
PROVENANCE_FACET = "synth_provenance"
PROVENANCE_FACET_SCHEMA_ID = "urn:synth:spec:facets:1-0-0:SynthProvenanceDatasetFacet"
PROVENANCE_FACET_SCHEMA_URL = f"{PROVENANCE_FACET_SCHEMA_ID}#/$defs/SynthProvenanceDatasetFacet"
_RUN_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:synth:openlineage:run")


def repository_url(distribution: str = "synth") -> str:
    """The installed distribution's repository URL (`[project.urls]`), the OpenLineage
    producer; `FALLBACK_PRODUCER` where the package is not installed or names no URL."""
    try:
        entries = importlib_metadata.metadata(distribution).get_all("Project-URL") or []
    except importlib_metadata.PackageNotFoundError:
        return FALLBACK_PRODUCER
    urls = {}
    for entry in entries:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    return next((urls[label] for label in _REPOSITORY_LABELS if urls.get(label)), FALLBACK_PRODUCER)


DEFAULT_PRODUCER = repository_url()

PROVENANCE_FACET_SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "provenance_facet.schema.json").read_text()
)


@attr.define(kw_only=True)
class SynthProvenanceDatasetFacet(DatasetFacet):
    """Who made the rows of a dataset: the summary of its per-row provenance columns."""

    contentHash: str
    stages: list[str]
    generators: list[dict[str, str]]
    templates: list[dict[str, str]]
    smokeModel: bool
    rootSeedCount: int

    @staticmethod
    def _get_schema() -> str:
        return PROVENANCE_FACET_SCHEMA_URL


@dataclass(frozen=True)
class RunRef:
    """Which materialization an event belongs to."""

    dagster_run_id: str
    dagster_job: str
    asset_key: str
    partition: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    producer: str = DEFAULT_PRODUCER

    @property
    def job_name(self) -> str:
        return "synth." + self.asset_key.replace("/", ".")

    @property
    def run_id(self) -> str:
        material = f"{self.dagster_run_id}\0{self.asset_key}\0{self.partition or ''}"
        return str(uuid.uuid5(_RUN_ID_NAMESPACE, material))


@dataclass(frozen=True, eq=False)
class InputSnapshot:
    """What is known of one upstream dataset when its downstream asset is written."""

    location: str
    schema: Mapping[str, pl.DataType] | None = None
    ids: pl.Series | None = None


def dataset_identity(location: str) -> tuple[str, str]:
    """(namespace, name) per the OpenLineage naming spec: `s3://bucket` + key, `file` + path."""
    scheme, sep, rest = location.partition("://")
    if sep and scheme != "file":
        bucket, _, key = rest.partition("/")
        return f"{scheme}://{bucket}", key
    return "file", os.path.abspath(rest if sep else location)


def _schema_field(name: str, dtype: pl.DataType) -> schema_dataset.SchemaDatasetFacetFields:
    if isinstance(dtype, pl.Struct):
        nested = [_schema_field(f.name, f.dtype) for f in dtype.fields]
        return schema_dataset.SchemaDatasetFacetFields(name=name, type="struct", fields=nested)
    if isinstance(dtype, pl.List | pl.Array):
        nested = [_schema_field("_element", dtype.inner)]
        return schema_dataset.SchemaDatasetFacetFields(name=name, type="list", fields=nested)
    return schema_dataset.SchemaDatasetFacetFields(name=name, type=str(dtype))


def schema_facet(
    schema: Mapping[str, pl.DataType], producer: str = DEFAULT_PRODUCER
) -> schema_dataset.SchemaDatasetFacet:
    """Columns in order; structs and lists carry their nested fields (`_element` for items)."""
    fields = [_schema_field(name, dtype) for name, dtype in schema.items()]
    for position, field in enumerate(fields, start=1):
        field.ordinal_position = position
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=producer)


def quality_facet(
    frame: pl.DataFrame, size_bytes: int | None, producer: str = DEFAULT_PRODUCER
) -> data_quality_metrics_dataset.DataQualityMetricsDatasetFacet:
    """Row count and per-column null counts of the frame as written."""
    nulls = frame.null_count().row(0, named=True) if frame.width else {}
    return data_quality_metrics_dataset.DataQualityMetricsDatasetFacet(
        rowCount=frame.height,
        bytes=size_bytes,
        fileCount=1,
        columnMetrics={
            name: data_quality_metrics_dataset.ColumnMetrics(nullCount=int(count))
            for name, count in nulls.items()
        },
        producer=producer,
    )


def provenance_facet(
    frame: pl.DataFrame, producer: str = DEFAULT_PRODUCER
) -> SynthProvenanceDatasetFacet | None:
    """Summary of the provenance columns; None for frames that have none (e.g. quarantine)."""
    if "id" not in frame.columns:
        return None
    generators: list[dict[str, str]] = []
    templates: list[dict[str, str]] = []
    smoke = False
    if "generator" in frame.columns and frame.height:
        made = frame.get_column("generator").struct.unnest().drop_nulls(subset=["model"])
        generators = made.select("backend", "model", "revision").unique().sort("model").to_dicts()
        templates = (
            made.select(pl.col("template").alias("name"), pl.col("template_hash").alias("hash"))
            .drop_nulls()
            .unique()
            .sort("name", "hash")
            .to_dicts()
        )
        smoke = bool(made.get_column("is_smoke_model").any())
    roots = 0
    if "root_seed_ids" in frame.columns:
        roots = frame.get_column("root_seed_ids").explode().drop_nulls().n_unique()
    stages = (
        frame.get_column("stage").drop_nulls().unique().sort().to_list() if frame.height else []
    )
    return SynthProvenanceDatasetFacet(
        contentHash=content_hash(frame) if frame.height else "empty",
        stages=stages,
        generators=generators,
        templates=templates,
        smokeModel=smoke,
        rootSeedCount=roots,
        producer=producer,
    )


def _input_field(
    snapshot: InputSnapshot, column: str, subtype: str | None, description: str | None
) -> column_lineage_dataset.InputField:
    namespace, name = dataset_identity(snapshot.location)
    transformations = []
    if subtype:
        transformations = [
            column_lineage_dataset.Transformation(
                type="DIRECT", subtype=subtype, description=description
            )
        ]
    return column_lineage_dataset.InputField(
        namespace=namespace, name=name, field=column, transformations=transformations
    )


def _inferred_lineage(
    frame: pl.DataFrame, snapshot: InputSnapshot
) -> list[tuple[str, column_lineage_dataset.InputField]]:
    if snapshot.ids is None or snapshot.schema is None or "id" not in frame.columns:
        return []
    shared = [c for c in frame.columns if c in snapshot.schema]
    if frame.get_column("id").is_in(snapshot.ids).any():
        # a carried-over row may gain this stage's verdicts; every other column is as it was
        return [
            (c, _input_field(snapshot, c, "TRANSFORMATION", "parent's verdicts plus this stage's"))
            if c == "verdicts"
            else (c, _input_field(snapshot, c, "IDENTITY", None))
            for c in shared
        ]
    if "parent_ids" not in frame.columns:
        return []
    if not frame.get_column("parent_ids").explode().drop_nulls().is_in(snapshot.ids).any():
        return []
    found = [("parent_ids", _input_field(snapshot, "id", "TRANSFORMATION", "parent row ids"))]
    if "root_seed_ids" in shared:
        roots = _input_field(snapshot, "root_seed_ids", "AGGREGATION", "union of parents' roots")
        found.append(("root_seed_ids", roots))
    for column in (c for c in shared if c not in PROVENANCE_COLUMNS):
        found.append(
            (
                column,
                _input_field(
                    snapshot, column, "TRANSFORMATION", "derived from the parent row's value"
                ),
            )
        )
    return found


def column_lineage_facet(
    frame: pl.DataFrame,
    inputs: Sequence[InputSnapshot],
    declared: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> column_lineage_dataset.ColumnLineageDatasetFacet | None:
    """Column lineage the asset declared, else what content-addressed ids prove.

    `declared` maps an output column to (input location, input column) pairs. Without it:
    an output row whose id is an input id is that input row carried over, so every column
    the two share is IDENTITY (but `verdicts`, which a stage may append to); an output row
    whose parent is an input row gets `parent_ids` from the input's `id`, `root_seed_ids`
    from the input's, and same-named payload columns are
    marked TRANSFORMATION (derived, not copied). Anything else is left out, not guessed.
    """
    by_location = {snapshot.location: snapshot for snapshot in inputs}
    fields: dict[str, list[column_lineage_dataset.InputField]] = defaultdict(list)
    if declared:
        for column, deps in declared.items():
            for location, source in deps:
                snapshot = by_location.get(location, InputSnapshot(location))
                fields[column].append(_input_field(snapshot, source, None, None))
    else:
        for snapshot in inputs:
            for column, dep in _inferred_lineage(frame, snapshot):
                fields[column].append(dep)
    if not fields:
        return None
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            column: column_lineage_dataset.Fields(inputFields=d) for column, d in fields.items()
        },
        producer=producer,
    )


def input_dataset(snapshot: InputSnapshot, producer: str = DEFAULT_PRODUCER) -> InputDataset:
    namespace, name = dataset_identity(snapshot.location)
    facets = {"schema": schema_facet(snapshot.schema, producer)} if snapshot.schema else {}
    return InputDataset(namespace=namespace, name=name, facets=facets)


def output_dataset(
    location: str,
    frame: pl.DataFrame | None = None,
    *,
    size_bytes: int | None = None,
    inputs: Sequence[InputSnapshot] = (),
    declared_lineage: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> OutputDataset:
    """The written dataset; with `frame`, every facet we can state about it."""
    namespace, name = dataset_identity(location)
    if frame is None:
        return OutputDataset(namespace=namespace, name=name)
    facets: dict[str, DatasetFacet] = {
        "schema": schema_facet(frame.schema, producer),
        "dataQualityMetrics": quality_facet(frame, size_bytes, producer),
    }
    lineage = column_lineage_facet(frame, inputs, declared_lineage, producer)
    if lineage:
        facets["columnLineage"] = lineage
    provenance = provenance_facet(frame, producer)
    if provenance:
        facets[PROVENANCE_FACET] = provenance
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=frame.height, size=size_bytes, fileCount=1, producer=producer
    )
    return OutputDataset(
        namespace=namespace, name=name, facets=facets, outputFacets={"outputStatistics": stats}
    )


def run_event(
    ref: RunRef,
    state: RunState,
    when: datetime,
    *,
    inputs: Sequence[InputDataset] = (),
    outputs: Sequence[OutputDataset] = (),
    error: tuple[str, str] | None = None,
) -> RunEvent:
    """One state transition of the materialization `ref`; `error` = (message, stack trace)."""
    parent_id = _as_uuid(ref.dagster_run_id)
    facets: dict[str, Any] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_id),
            job=parent_run.Job(namespace=ref.namespace, name=ref.dagster_job),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=parent_id),
                job=parent_run.RootJob(namespace=ref.namespace, name=ref.dagster_job),
            ),
            producer=ref.producer,
        )
    }
    if error:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error[0],
            programmingLanguage="python",
            stackTrace=error[1],
            producer=ref.producer,
        )
    job_facets = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="DAGSTER", jobType="ASSET", producer=ref.producer
        )
    }
    return RunEvent(
        eventType=state,
        eventTime=when.isoformat(),
        run=Run(runId=ref.run_id, facets=facets),
        job=Job(namespace=ref.namespace, name=ref.job_name, facets=job_facets),
        inputs=list(inputs),
        outputs=list(outputs),
        producer=ref.producer,
    )


def _as_uuid(value: str) -> str:
    """Dagster run ids are UUIDs already; anything else is mapped to a stable one."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(_RUN_ID_NAMESPACE, value))
