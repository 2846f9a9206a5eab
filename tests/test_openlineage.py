"""OpenLineage events of real materializations, received and schema-validated over HTTP.

The receiver validates every event against the OpenLineage 2-0-2 run-event schema and the
schema of each facet it carries, named by the facet's `_schemaURL`. openlineage-python
ships no JSON schema files, so the definitions below are transcribed from the spec
(spec/OpenLineage.json and spec/facets/*.json; descriptions and examples left out).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import tomllib
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import polars as pl
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from resources.lineage import OpenLineageEmitter
from resources.parquet_io import PolarsParquetIOManager, lineage_failure_hook
from synth_assets import seeds
from synth_assets import text as text_assets
from synth_jobs.lineage_sensors import openlineage_run_failures
from synth_jobs.profiles import local_resources
from synth_lib.lineage.openlineage_events import (
    DEFAULT_PRODUCER,
    FALLBACK_PRODUCER,
    PROVENANCE_FACET_SCHEMA,
    PROVENANCE_FACET_SCHEMA_URL,
    InputSnapshot,
    RunRef,
    column_lineage_facet,
    dataset_identity,
    repository_url,
)
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext, make_row, rows_to_frame
from tests.shards import REF, materialize_shard, shard_file

CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = "https://openlineage.io/spec/facets"
STR, INT, UUID = {"type": "string"}, {"type": "integer"}, {"type": "string", "format": "uuid"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _facet_map(kind: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"$ref": f"#/$defs/{kind}"}}


def _extends(base: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "allOf": [{"$ref": base}, body]}


OPENLINEAGE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": CORE,
    "$defs": {
        "BaseEvent": _obj(["eventTime", "producer", "schemaURL"], eventTime=STR, producer=STR),
        "RunEvent": _extends(
            "#/$defs/BaseEvent",
            _obj(
                ["run", "job"],
                eventType={"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
                run={"$ref": "#/$defs/Run"},
                job={"$ref": "#/$defs/Job"},
                inputs={"type": "array", "items": {"$ref": "#/$defs/InputDataset"}},
                outputs={"type": "array", "items": {"$ref": "#/$defs/OutputDataset"}},
            ),
        ),
        "Run": _obj(["runId"], runId=UUID, facets=_facet_map("RunFacet")),
        "Job": _obj(["namespace", "name"], namespace=STR, name=STR, facets=_facet_map("JobFacet")),
        "Dataset": _obj(
            ["namespace", "name"], namespace=STR, name=STR, facets=_facet_map("DatasetFacet")
        ),
        "InputDataset": _extends(
            "#/$defs/Dataset", _obj([], inputFacets=_facet_map("InputDatasetFacet"))
        ),
        "OutputDataset": _extends(
            "#/$defs/Dataset", _obj([], outputFacets=_facet_map("OutputDatasetFacet"))
        ),
        "BaseFacet": _obj(["_producer", "_schemaURL"], _producer=STR, _schemaURL=STR),
        "RunFacet": _extends("#/$defs/BaseFacet", {}),
        "JobFacet": _extends("#/$defs/BaseFacet", _obj([], _deleted={"type": "boolean"})),
        "DatasetFacet": _extends("#/$defs/BaseFacet", _obj([], _deleted={"type": "boolean"})),
        "InputDatasetFacet": _extends("#/$defs/BaseFacet", {}),
        "OutputDatasetFacet": _extends("#/$defs/BaseFacet", {}),
    },
    "oneOf": [{"$ref": "#/$defs/RunEvent"}],
}

_INPUT_FIELD = _obj(
    ["namespace", "name", "field"],
    namespace=STR,
    name=STR,
    field=STR,
    transformations={"type": "array", "items": _obj(["type"], type=STR, subtype=STR)},
)
_SCHEMA_FIELD = _obj(
    ["name"],
    name=STR,
    type=STR,
    ordinal_position=INT,
    fields={"type": "array", "items": {"$ref": "#/$defs/SchemaDatasetFacetFields"}},
)
_TAGS = _obj([], tags={"type": "array", "items": _obj(["key", "value"], key=STR, value=STR)})
_RUN_AND_JOB = {
    "run": _obj(["runId"], runId=UUID),
    "job": _obj(["namespace", "name"], namespace=STR, name=STR),
}
# facet name -> (base facet kind, body, extra $defs)
FACET_SCHEMAS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "SchemaDatasetFacet": (
        "DatasetFacet",
        _obj([], fields={"type": "array", "items": {"$ref": "#/$defs/SchemaDatasetFacetFields"}}),
        {"SchemaDatasetFacetFields": _SCHEMA_FIELD},
    ),
    "DataQualityMetricsDatasetFacet": (
        "DatasetFacet",
        _obj(
            ["columnMetrics"],
            rowCount=INT,
            bytes=INT,
            fileCount=INT,
            columnMetrics={
                "type": "object",
                "additionalProperties": _obj([], nullCount=INT, distinctCount=INT),
            },
        ),
        {},
    ),
    "ColumnLineageDatasetFacet": (
        "DatasetFacet",
        _obj(
            ["fields"],
            fields={
                "type": "object",
                "additionalProperties": _obj(
                    ["inputFields"],
                    inputFields={"type": "array", "items": {"$ref": "#/$defs/InputField"}},
                ),
            },
            dataset={"type": "array", "items": {"$ref": "#/$defs/InputField"}},
        ),
        {"InputField": _INPUT_FIELD},
    ),
    "OutputStatisticsOutputDatasetFacet": (
        "OutputDatasetFacet",
        _obj([], rowCount=INT, size=INT, fileCount=INT),
        {},
    ),
    "ParentRunFacet": (
        "RunFacet",
        _obj(["run", "job"], **_RUN_AND_JOB, root=_obj(["run", "job"], **_RUN_AND_JOB)),
        {},
    ),
    "ErrorMessageRunFacet": (
        "RunFacet",
        _obj(["message", "programmingLanguage"], message=STR, programmingLanguage=STR),
        {},
    ),
    "TagsRunFacet": ("RunFacet", _TAGS, {}),
    "TagsJobFacet": ("JobFacet", _TAGS, {}),
    "JobTypeJobFacet": (
        "JobFacet",
        _obj(["processingType", "integration"], processingType=STR, integration=STR, jobType=STR),
        {},
    ),
}


def _facet_document(name: str) -> dict[str, Any]:
    kind, body, defs = FACET_SCHEMAS[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{FACETS}/{name}.json",
        "$defs": {name: _extends(f"{CORE}#/$defs/{kind}", body), **defs},
    }


REGISTRY = Registry().with_resources(
    (doc["$id"], Resource.from_contents(doc))
    for doc in [
        OPENLINEAGE_SCHEMA,
        PROVENANCE_FACET_SCHEMA,
        *(_facet_document(name) for name in FACET_SCHEMAS),
    ]
)
_OL_FACET_URL = re.compile(rf"^{re.escape(FACETS)}/\d+-\d+-\d+/(\w+)\.json#/\$defs/(\w+)$")


def _facets(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = list(event["run"].get("facets", {}).items()) + list(
        event["job"].get("facets", {}).items()
    )
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        for group in ("facets", "inputFacets", "outputFacets"):
            found += list(dataset.get(group, {}).items())
    return found


def validate_event(event: dict[str, Any]) -> list[str]:
    """Every way `event` breaks the run-event schema or one of its facets' schemas."""
    problems = [
        e.message
        for e in Draft202012Validator(
            {"$ref": CORE}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
        ).iter_errors(event)
    ]
    if problems:
        return problems
    try:
        datetime.fromisoformat(event["eventTime"])
    except ValueError:
        problems.append(f"eventTime {event['eventTime']} is not ISO 8601")
    if not event["schemaURL"].startswith(f"{CORE}#/$defs/RunEvent"):
        problems.append(f"schemaURL {event['schemaURL']}")
    for name, facet in _facets(event):
        if not urlparse(facet["_producer"]).scheme:
            problems.append(f"{name}: _producer is not a URI")
        url = facet["_schemaURL"]
        if url == PROVENANCE_FACET_SCHEMA_URL:
            target = url
        elif (match := _OL_FACET_URL.match(url)) and match[1] == match[2] in FACET_SCHEMAS:
            target = f"{FACETS}/{match[1]}.json#/$defs/{match[1]}"
        else:
            problems.append(f"{name}: no known schema at {url}")
            continue
        validator = Draft202012Validator({"$ref": target}, registry=REGISTRY)
        problems += [f"{name}: {e.message}" for e in validator.iter_errors(facet)]
    return problems


class Receiver(ThreadingHTTPServer):
    """A lineage backend on loopback that keeps what it got and refuses invalid events."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.auth: dict[str, str | None] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of_job(self, job: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["job"]["name"] == job]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = json.loads(body)
        problems = validate_event(event)
        if self.path != "/api/v1/lineage":
            problems.append(f"posted to {self.path}, not the OpenLineage endpoint")
        self.server.events.append(event)
        self.server.auth[event["run"]["runId"]] = self.headers.get("Authorization")
        self.server.problems += problems
        self.send_response(400 if problems else 200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _io_manager(data: Path, **lineage: Any) -> PolarsParquetIOManager:
    return PolarsParquetIOManager(base_dir=str(data), lineage=OpenLineageEmitter(**lineage))


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        e.materialization.asset_key.to_user_string(): {
            k: v.value for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def graph(receiver, tmp_path_factory, smoke_models_dir):
    """Seeds and rephrasings (smoke model) in one run, events posted to the receiver."""
    home = tmp_path_factory.mktemp("ol")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTH_MODELS_DIR", str(smoke_models_dir))
        patch.delenv("SYNTH_GSM8K_PATH", raising=False)
        resources = local_resources(home)
        resources["io_manager"] = _io_manager(home / "data", transport="http", url=receiver.url)
        result = materialize_shard(
            [seeds.seeds, text_assets.rephrasings],
            selection=["text_seeds", "code_seeds", "math_seeds", "seed_quarantine", "rephrasings"],
            resources=resources,
            run_config={
                "ops": {
                    "rephrasings": {
                        "config": {
                            "max_seeds": 2,
                            "styles": ["easy", "qa"],
                            "max_tokens": 24,
                            # the reference seeds are longer than the default cap
                            "max_passage_chars": 0,
                        }
                    }
                }
            },
        )
    assert result.success
    return home / "data", result


def test_every_materialization_is_a_valid_start_then_complete(graph, receiver):
    _, result = graph
    written = _metadata(result)
    assert {"text_seeds", "code_seeds", "rephrasings"} <= set(written)
    assert receiver.problems == []
    for key, metadata in written.items():
        events = receiver.of_job(f"synth.{key}")
        assert [e["eventType"] for e in events] == ["START", "COMPLETE"], key
        run_id = RunRef(result.run_id, result.job_def.name, key, partition=REF).run_id
        assert {e["run"]["runId"] for e in events} == {run_id} == {metadata["openlineage_run_id"]}
        parent = events[1]["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == result.run_id
        assert (parent["job"]["namespace"], parent["job"]["name"]) == ("synth", result.job_def.name)
        assert events[0]["eventTime"] <= events[1]["eventTime"]
        assert metadata["openlineage_errors"] == 0


def test_output_facets_describe_the_written_parquet(graph, receiver):
    data, result = graph
    written = _metadata(result)
    for key in ("text_seeds", "rephrasings"):
        path = shard_file(data, key)
        frame = pl.read_parquet(path)
        (complete,) = [e for e in receiver.of_job(f"synth.{key}") if e["eventType"] == "COMPLETE"]
        (output,) = complete["outputs"]
        assert (output["namespace"], output["name"]) == ("file", str(path))
        facets = output["facets"]
        assert [f["name"] for f in facets["schema"]["fields"]] == frame.columns
        quality = facets["dataQualityMetrics"]
        assert quality["rowCount"] == frame.height == written[key]["dagster/row_count"]
        assert quality["columnMetrics"]["text"]["nullCount"] == frame["text"].null_count()
        assert output["outputFacets"]["outputStatistics"]["size"] == path.stat().st_size
        provenance = facets["synth_provenance"]
        assert provenance["contentHash"] == written[key]["content_hash"]
        assert provenance["stages"] == [key]
        roots = frame["root_seed_ids"].explode().n_unique()
        assert provenance["rootSeedCount"] == roots


def test_rephrasings_record_who_made_them_and_from_what(graph, receiver):
    data, _ = graph
    frame = pl.read_parquet(shard_file(data, "rephrasings"))
    assert frame.height > 0, "the smoke model should complete some rephrasings"
    (complete,) = [e for e in receiver.of_job("synth.rephrasings") if e["eventType"] == "COMPLETE"]
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [
        ("file", str(shard_file(data, "text_seeds")))
    ]
    facets = complete["outputs"][0]["facets"]
    provenance = facets["synth_provenance"]
    assert provenance["smokeModel"] is True
    models = {g["model"] for g in provenance["generators"]}
    assert models == set(frame["generator"].struct.field("model").unique())
    assert all(model.startswith("smoke-random-") for model in models)
    expected = {load_template(f"rephrase_{style}") for style in frame["style"].unique()}
    assert {(t["name"], t["hash"]) for t in provenance["templates"]} == {
        (t.name, t.hash) for t in expected
    }
    lineage = facets["columnLineage"]["fields"]
    assert {f["field"] for f in lineage["parent_ids"]["inputFields"]} == {"id"}
    (text,) = lineage["text"]["inputFields"]
    assert (text["name"], text["field"]) == (str(shard_file(data, "text_seeds")), "text")
    assert text["transformations"][0]["subtype"] == "TRANSFORMATION"
    assert "style" not in lineage and "run_id" not in lineage


def test_a_failing_asset_sends_start_then_fail(receiver, tmp_path):
    @dg.asset(hooks={lineage_failure_hook})
    def doomed() -> pl.DataFrame:
        raise ValueError("the stage broke")

    result = dg.materialize(
        [doomed],
        resources={"io_manager": _io_manager(tmp_path, transport="http", url=receiver.url)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    events = receiver.of_job("synth.doomed")
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert {e["run"]["runId"] for e in events} == {RunRef(result.run_id, "", "doomed").run_id}
    error = events[1]["run"]["facets"]["errorMessage"]
    assert "the stage broke" in error["message"] and error["programmingLanguage"] == "python"
    assert events[1]["outputs"][0]["name"] == str(tmp_path / "doomed.parquet")
    assert receiver.problems == []


@dg.asset
def tiny() -> dg.MaterializeResult:
    ctx = RowContext("r")
    rows = [make_row(stage="tiny", payload={"text": t}, ctx=ctx) for t in ("a", "b", None)]
    return dg.MaterializeResult(value=rows_to_frame(rows, {"text": pl.Utf8}))


def test_default_file_transport_appends_valid_json_lines(synth_home):
    io_manager = PolarsParquetIOManager(
        base_dir=str(synth_home / "data"), lineage=OpenLineageEmitter()
    )
    for _ in range(2):
        assert dg.materialize([tiny], resources={"io_manager": io_manager}).success
    lines = (synth_home / "openlineage" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 2
    assert all(validate_event(e) == [] for e in events)
    quality = events[1]["outputs"][0]["facets"]["dataQualityMetrics"]
    assert quality["rowCount"] == 3 and quality["columnMetrics"]["text"]["nullCount"] == 1
    assert events[0]["run"]["runId"] != events[2]["run"]["runId"]


def test_column_lineage_the_asset_declares_is_what_is_sent(tmp_path):
    @dg.asset
    def shout(tiny: pl.DataFrame) -> dg.MaterializeResult:
        lineage = dg.TableColumnLineage(
            deps_by_column={"loud": [dg.TableColumnDep(dg.AssetKey("tiny"), "text")]}
        )
        loud = tiny.select(pl.col("text").str.to_uppercase().alias("loud"))
        return dg.MaterializeResult(value=loud, metadata={"dagster/column_lineage": lineage})

    events_file = tmp_path / "events.jsonl"
    io_manager = _io_manager(tmp_path, file_path=str(events_file))
    assert dg.materialize([tiny, shout], resources={"io_manager": io_manager}).success
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    (complete,) = [
        e for e in events if e["job"]["name"] == "synth.shout" and e["eventType"] == "COMPLETE"
    ]
    assert validate_event(complete) == []
    (source,) = complete["outputs"][0]["facets"]["columnLineage"]["fields"]["loud"]["inputFields"]
    assert (source["name"], source["field"]) == (str(tmp_path / "tiny.parquet"), "text")
    assert [i["name"] for i in complete["inputs"]] == [str(tmp_path / "tiny.parquet")]


def test_the_token_comes_from_the_environment(receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_OPENLINEAGE_TOKEN", "s3cret")
    token = dg.EnvVar("SYNTH_TEST_OPENLINEAGE_TOKEN")
    io_manager = _io_manager(tmp_path, transport="http", url=receiver.url, api_key=token)
    result = dg.materialize([tiny], resources={"io_manager": io_manager})
    assert receiver.auth[_metadata(result)["tiny"]["openlineage_run_id"]] == "Bearer s3cret"


def test_unreachable_or_misconfigured_backend_never_fails_the_write(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for config in ({"url": closed, "retries": 0, "timeout_s": 1}, {"url": ""}):
        io_manager = _io_manager(tmp_path, transport="http", **config)
        result = dg.materialize([tiny], resources={"io_manager": io_manager})
        assert result.success
        assert pl.read_parquet(tmp_path / "tiny.parquet").height == 3
        assert _metadata(result)["tiny"]["openlineage_errors"] == 2


def test_run_ids_are_stable_per_run_asset_and_partition():
    ref = RunRef("0f3c1d2e-6b7a-4c5d-8e9f-0a1b2c3d4e5f", "synth_all", "rephrasings")
    assert ref.run_id == RunRef(ref.dagster_run_id, "other_job", "rephrasings").run_id
    others = {
        RunRef(ref.dagster_run_id, "synth_all", "training_mix").run_id,
        RunRef(ref.dagster_run_id, "synth_all", "rephrasings", partition="2").run_id,
        RunRef("1f3c1d2e-6b7a-4c5d-8e9f-0a1b2c3d4e5f", "synth_all", "rephrasings").run_id,
    }
    assert ref.run_id not in others and len(others) == 3
    assert ref.job_name == "synth.rephrasings"


def test_dataset_names_follow_the_openlineage_naming_spec(tmp_path):
    assert dataset_identity("s3://bucket/data/mix.parquet") == ("s3://bucket", "data/mix.parquet")
    assert dataset_identity(str(tmp_path / "a.parquet")) == ("file", str(tmp_path / "a.parquet"))
    assert dataset_identity("file:///x/a.parquet") == ("file", "/x/a.parquet")


def test_rows_passed_through_unchanged_get_identity_lineage():
    ctx = RowContext("r")
    rows = [make_row(stage="s", payload={"text": t}, ctx=ctx) for t in ("a", "b", "c")]
    upstream = rows_to_frame(rows, {"text": pl.Utf8})
    kept = upstream.head(2)
    snapshot = InputSnapshot("/d/up.parquet", dict(upstream.schema), upstream["id"])
    facet = column_lineage_facet(kept, [snapshot])
    assert set(facet.fields) == set(kept.columns)
    for column, lineage in facet.fields.items():
        (source,) = lineage.inputFields
        subtype = "TRANSFORMATION" if column == "verdicts" else "IDENTITY"
        assert (source.field, source.transformations[0].subtype) == (column, subtype)
    unrelated = InputSnapshot("/d/other.parquet", dict(upstream.schema), pl.Series(["zz"]))
    assert column_lineage_facet(kept, [unrelated]) is None


def test_the_validator_refuses_broken_events(graph, receiver):
    good = next(e for e in receiver.events if e["eventType"] == "COMPLETE")
    assert validate_event(good) == []
    for breakage in (
        lambda e: e["run"].update(runId="not-a-uuid"),
        lambda e: e["job"].pop("namespace"),
        lambda e: e["outputs"][0]["facets"]["schema"].pop("_producer"),
        lambda e: e["outputs"][0]["facets"]["dataQualityMetrics"].update(rowCount="many"),
        lambda e: e["outputs"][0]["facets"]["synth_provenance"].pop("contentHash"),
        lambda e: e["run"]["facets"]["parent"].update(_schemaURL="https://example.org/x.json"),
    ):
        broken = json.loads(json.dumps(good))
        breakage(broken)
        assert validate_event(broken), breakage


def test_the_producer_is_the_repository_url(graph, receiver):
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    url = pyproject["project"]["urls"]["Repository"]
    assert DEFAULT_PRODUCER == url == repository_url()
    assert repository_url("no-such-distribution-of-synth") == FALLBACK_PRODUCER
    events = receiver.of_job("synth.rephrasings")
    assert events and {e["producer"] for e in events} == {url}
    # the client adds a `tags` facet of its own and names itself as its producer
    ours = [facet for e in events for name, facet in _facets(e) if name != "tags"]
    assert ours and {facet["_producer"] for facet in ours} == {url}


def _upstream(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def ol_up() -> pl.DataFrame:
        rows = [
            make_row(stage="up", payload={"text": str(i)}, ctx=RowContext("r")) for i in range(2)
        ]
        return rows_to_frame(rows, {"text": pl.Utf8})

    return ol_up


def test_a_failing_step_lists_its_inputs(receiver, tmp_path):
    ol_up = _upstream("ol_up")

    @dg.asset(hooks={lineage_failure_hook})
    def ol_broken(ol_up: pl.DataFrame) -> pl.DataFrame:
        raise ValueError("the stage broke")

    result = dg.materialize(
        [ol_up, ol_broken],
        resources={"io_manager": _io_manager(tmp_path, transport="http", url=receiver.url)},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    start, fail = receiver.of_job("synth.ol_broken")
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    upstream = str(tmp_path / "ol_up.parquet")
    assert [(i["namespace"], i["name"]) for i in fail["inputs"]] == [("file", upstream)]
    assert fail["inputs"][0]["facets"]["schema"]["fields"][0]["name"] == "text"
    assert [i["name"] for i in start["inputs"]] == [upstream]
    assert receiver.problems == []


def test_a_failed_run_sends_fail_for_assets_no_step_reported(receiver, tmp_path):
    """mid raises (its hook reports it); last is never run: the run-failure sensor sends its
    FAIL, with its input, and nothing for the assets already reported or written."""
    ol_up = _upstream("ol_first")

    @dg.asset(name="ol_mid", hooks={lineage_failure_hook})
    def ol_mid(ol_first: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("worker lost")

    @dg.asset(name="ol_last", hooks={lineage_failure_hook})
    def ol_last(ol_mid: pl.DataFrame) -> pl.DataFrame:
        return ol_mid

    io_manager = _io_manager(tmp_path, transport="http", url=receiver.url)
    instance = dg.DagsterInstance.ephemeral()
    assets = [ol_up, ol_mid, ol_last]
    result = dg.materialize(
        assets, resources={"io_manager": io_manager}, instance=instance, raise_on_error=False
    )
    assert not result.success
    assert receiver.of_job("synth.ol_last") == []
    [failure] = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    with dg.build_run_status_sensor_context(
        sensor_name=openlineage_run_failures.name,
        dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"io_manager": io_manager},
        repository_def=dg.Definitions(assets=assets).get_repository_def(),
    ) as context:
        reply = openlineage_run_failures(context)
    assert "sent FAIL for 1 of 1" in reply.skip_message
    [fail] = receiver.of_job("synth.ol_last")
    assert fail["eventType"] == "FAIL"
    assert fail["run"]["runId"] == RunRef(result.run_id, "", "ol_last").run_id
    # ol_mid was never written: named as any upstream this IO manager holds no file for
    assert [i["name"] for i in fail["inputs"]] == [str(tmp_path / "ol_mid")]
    assert fail["outputs"][0]["name"] == str(tmp_path / "ol_last.parquet")
    error = fail["run"]["facets"]["errorMessage"]
    assert "worker lost" in error["stackTrace"] and error["message"]
    assert [e["eventType"] for e in receiver.of_job("synth.ol_mid")] == ["START", "FAIL"]
    assert [e["eventType"] for e in receiver.of_job("synth.ol_first")] == ["START", "COMPLETE"]
    assert receiver.problems == []


class _DeviceLost(dg.ConfigurableResource):
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        raise RuntimeError("device lost")


def test_a_run_that_fails_before_any_step_sends_fail(receiver, tmp_path):
    """A resource that cannot start fails the run before the step: no hook runs, so only the
    run-failure sensor can say the asset failed."""
    ol_source = _upstream("ol_source")

    @dg.asset(name="ol_needs_device", hooks={lineage_failure_hook})
    def ol_needs_device(ol_source: pl.DataFrame, device: _DeviceLost) -> pl.DataFrame:
        return ol_source

    io_manager = _io_manager(tmp_path, transport="http", url=receiver.url)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"io_manager": io_manager, "device": _DeviceLost()}
    assert dg.materialize([ol_source], resources=resources, instance=instance).success
    result = dg.materialize(
        [ol_source, ol_needs_device],
        selection=["ol_needs_device"],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success and receiver.of_job("synth.ol_needs_device") == []
    [failure] = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    with dg.build_run_status_sensor_context(
        sensor_name=openlineage_run_failures.name,
        dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"io_manager": io_manager},
        repository_def=dg.Definitions(
            assets=[ol_source, ol_needs_device], resources=resources
        ).get_repository_def(),
    ) as context:
        openlineage_run_failures(context)
    [fail] = receiver.of_job("synth.ol_needs_device")
    assert fail["eventType"] == "FAIL"
    upstream = str(tmp_path / "ol_source.parquet")
    assert [i["name"] for i in fail["inputs"]] == [upstream]
    assert "schema" in fail["inputs"][0]["facets"]
    assert "device lost" in fail["run"]["facets"]["errorMessage"]["stackTrace"]
    assert receiver.problems == []


def test_the_code_location_runs_the_failure_sensor():
    from synth_jobs.definitions import defs

    sensor = defs.resolve_sensor_def("openlineage_run_failures")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
