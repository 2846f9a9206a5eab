"""Assets stored on a real S3-compatible server (moto in server mode on loopback).

The IO manager talks to it over HTTP exactly as it would to AWS S3 or MinIO: seeds are
written as objects, `rephrasings` loads its input from the bucket and writes its output
there, and lineage events name the objects. Skipped without moto unless SYNTH_REQUIRE_S3=1.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from resources.lineage import OpenLineageEmitter
from resources.object_store import LocalFolder, S3Prefix, S3Storage
from resources.parquet_io import PolarsParquetIOManager
from synth_assets import seeds
from synth_assets import text as text_assets
from synth_jobs.profiles import local_resources
from synth_lib.provenance.schema import content_hash
from tests.shards import REF, materialize_shard

BUCKET = "synth-test"
PREFIX = "synth"
KEYS = ["text_seeds", "code_seeds", "math_seeds", "seed_quarantine", "rephrasings"]
# rephrasings takes the first seeds by id among those at most this long (RephraseConfig)
MAX_PASSAGE_CHARS = 700
CREDENTIALS = {"SYNTH_S3_ACCESS_KEY_ID": "test-key", "SYNTH_S3_SECRET_ACCESS_KEY": "test-secret"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with one empty bucket."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        if os.environ.get("SYNTH_REQUIRE_S3") == "1":
            raise
        pytest.skip(f"moto[server] not installed ({exc}); SYNTH_REQUIRE_S3=1 makes this fail")
    import boto3

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )


def _storage(endpoint: str) -> S3Storage:
    return S3Storage(
        endpoint_url=endpoint,
        region_name="us-east-1",
        access_key_id=dg.EnvVar("SYNTH_S3_ACCESS_KEY_ID"),
        secret_access_key=dg.EnvVar("SYNTH_S3_SECRET_ACCESS_KEY"),
    )


@pytest.fixture(scope="module")
def graph(
    endpoint: str, tmp_path_factory, smoke_models_dir
) -> tuple[Path, dg.ExecuteInProcessResult]:
    """Seeds and rephrasings (smoke model) in one run, every asset stored in the bucket."""
    home = tmp_path_factory.mktemp("s3")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setenv("SYNTH_MODELS_DIR", str(smoke_models_dir))
        patch.delenv("SYNTH_GSM8K_PATH", raising=False)
        resources = local_resources(home)
        resources["io_manager"] = PolarsParquetIOManager(
            base_dir=f"s3://{BUCKET}/{PREFIX}",
            s3=_storage(endpoint),
            lineage=OpenLineageEmitter(file_path=str(home / "events.jsonl")),
        )
        result = materialize_shard(
            [seeds.seeds, text_assets.rephrasings],
            selection=KEYS,
            resources=resources,
            run_config={
                "ops": {
                    "rephrasings": {
                        "config": {
                            "max_seeds": 2,
                            "max_tokens": 16,
                            "max_passage_chars": MAX_PASSAGE_CHARS,
                        }
                    }
                }
            },
        )
    assert result.success
    return home, result


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def _read(client: Any, key: str) -> pl.DataFrame:
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return pl.read_parquet(io.BytesIO(body))


def test_every_asset_is_one_object_at_its_key(graph, client):
    home, result = graph
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(f"{PREFIX}/{k}/{REF}.parquet" for k in KEYS)
    metadata = _metadata(result)
    for key in KEYS:
        assert metadata[key]["path"] == f"s3://{BUCKET}/{PREFIX}/{key}/{REF}.parquet"
        assert metadata[key]["openlineage_errors"] == 0, key
    assert not (home / "data").exists(), "nothing may be written to the local data folder"


def test_objects_hold_exactly_the_rows_each_asset_produced(graph, client):
    _, result = graph
    metadata = _metadata(result)
    for key in KEYS:
        frame = _read(client, f"{PREFIX}/{key}/{REF}.parquet")
        assert frame.height == metadata[key]["dagster/row_count"], key
        if "id" in frame.columns and frame.height:
            assert content_hash(frame) == metadata[key]["content_hash"], key
    assert metadata["text_seeds"]["dagster/row_count"] > 0


def test_downstream_asset_loads_its_input_from_the_bucket(graph, client):
    seeds_frame = _read(client, f"{PREFIX}/text_seeds/{REF}.parquet")
    rephrased = _read(client, f"{PREFIX}/rephrasings/{REF}.parquet")
    parents = set(rephrased.get_column("parent_ids").explode().to_list())
    short = seeds_frame.filter(pl.col("text").str.len_chars() <= MAX_PASSAGE_CHARS)
    first_two = set(short.sort("id").head(2).get_column("id").to_list())
    assert len(first_two) == 2 and short.height < seeds_frame.height, "the filter must bite"
    assert rephrased.height > 0
    # rows whose generation failed (e.g. hit max_tokens) are not rows: a subset, not all
    assert parents and parents <= first_two, "parents: the first two short seeds in the bucket"


def test_lineage_names_objects_and_reads_upstream_ids_from_the_bucket(graph):
    home, _ = graph
    events = [json.loads(line) for line in (home / "events.jsonl").read_text().splitlines()]
    complete = next(
        e
        for e in events
        if e["eventType"] == "COMPLETE" and e["job"]["name"] == "synth.rephrasings"
    )
    [output] = complete["outputs"]
    assert (output["namespace"], output["name"]) == (
        f"s3://{BUCKET}",
        f"{PREFIX}/rephrasings/{REF}.parquet",
    )
    assert output["facets"]["dataQualityMetrics"]["bytes"] > 0
    [upstream] = complete["inputs"]
    assert (upstream["namespace"], upstream["name"]) == (
        f"s3://{BUCKET}",
        f"{PREFIX}/text_seeds/{REF}.parquet",
    )
    assert "id" in {f["name"] for f in upstream["facets"]["schema"]["fields"]}
    lineage = output["facets"]["columnLineage"]["fields"]
    sources = {(f["namespace"], f["name"]) for c in lineage.values() for f in c["inputFields"]}
    assert (f"s3://{BUCKET}", f"{PREFIX}/text_seeds/{REF}.parquet") in sources


def test_missing_upstream_object_names_its_key(endpoint, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    manager = PolarsParquetIOManager(base_dir=f"s3://{BUCKET}/empty", s3=_storage(endpoint))
    with (
        dg.DagsterInstance.ephemeral() as instance,
        dg.build_resources({"io_manager": manager}, instance=instance) as resources,
    ):
        context = dg.build_input_context(asset_key=dg.AssetKey("text_seeds"))
        with pytest.raises(FileNotFoundError) as raised:
            resources.io_manager.load_input(context)
    message = str(raised.value)
    assert f"s3://{BUCKET}/empty/text_seeds.parquet" in message
    assert "has not been materialized yet" in message


def test_a_lazy_frame_is_written_like_the_collected_frame(client, tmp_path):
    """Both stores stream a LazyFrame (the curated mix) to the same bytes' worth of rows as
    the frame itself, at the same location, and report the stored size."""
    frame = pl.DataFrame({"id": [f"r{i}" for i in range(500)], "n": list(range(500))})
    bucket = S3Prefix(client, BUCKET, "lazy")
    local = LocalFolder(str(tmp_path))
    for store in (bucket, local):
        eager = store.location(["eager"], None)
        lazy = store.location(["lazy"], None)
        assert store.write(eager, frame) > 0
        size = store.write(lazy, frame.lazy().filter(pl.col("n") >= 0))
        assert size > 0
        assert store.read(lazy).equals(store.read(eager))
    assert not list(tmp_path.glob("**/.*.tmp"))
