"""Where an asset's Parquet bytes go: a local folder, or a key in an S3-compatible bucket.

`S3Storage` is our own small resource rather than dagster-aws's `S3Resource`: importing
`dagster_aws.s3` costs about 0.6 s more than boto3 alone in every step process, local runs
included, and we need four settings. boto3 (installed with dagster-aws) is imported only
when a bucket is actually used.
"""

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

S3_SCHEME = "s3://"


# a stored frame's schema and one of its columns (None when it has no such column)
Peek = tuple[dict[str, pl.DataType], pl.Series | None]


def _peek(source: str | io.BytesIO, column: str) -> Peek:
    schema = dict(pl.read_parquet_schema(source))
    if column not in schema:
        return schema, None
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return schema, pl.read_parquet(source, columns=[column]).get_column(column)


class S3Storage(dg.ConfigurableResource):
    """An S3-compatible object store (AWS S3, MinIO, Ceph, R2...)."""

    endpoint_url: str = Field(default="", description="Empty: AWS S3; else e.g. http://minio:9000.")
    region_name: str = Field(default="", description="Empty: boto3's default region.")
    access_key_id: str = Field(
        default="",
        description="Set only via dg.EnvVar; empty: boto3's default credential chain "
        "(AWS_* variables, profile, instance or pod role).",
    )
    secret_access_key: str = Field(default="", description="Set only via dg.EnvVar.")

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region_name or None,
            aws_access_key_id=self.access_key_id or None,
            aws_secret_access_key=self.secret_access_key or None,
        )


@dataclass(frozen=True)
class LocalFolder:
    """Files under a folder; a write goes to a temporary file renamed into place."""

    base: str

    def location(self, parts: Sequence[str], partition: str | None) -> str:
        path = Path(self.base, *parts)
        return str(path / f"{partition}.parquet" if partition else path.with_suffix(".parquet"))

    def write(self, location: str, frame: pl.DataFrame | pl.LazyFrame) -> int:
        """Write a frame, or stream a lazy one (`sink_parquet`), then rename it into place."""
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if isinstance(frame, pl.LazyFrame):
            frame.sink_parquet(staging, statistics=True)
        else:
            frame.write_parquet(staging, statistics=True)
        os.replace(staging, path)
        return path.stat().st_size

    def read(self, location: str, columns: list[str] | None = None) -> pl.DataFrame:
        if not Path(location).is_file():
            raise FileNotFoundError(location)
        return pl.read_parquet(location, columns=columns)

    def peek(self, location: str, column: str) -> Peek | None:
        if not Path(location).is_file():
            return None
        return _peek(location, column)

    def exists(self, location: str) -> bool:
        return Path(location).is_file()

    def scan(self, location: str) -> pl.LazyFrame:
        """A lazy reader: nothing is loaded until the caller collects what it needs."""
        return pl.scan_parquet(location)


@dataclass(frozen=True)
class S3Prefix:
    """Objects under `s3://bucket/prefix/`; a PUT is atomic, so no staging object is needed."""

    client: Any
    bucket: str
    prefix: str

    def location(self, parts: Sequence[str], partition: str | None) -> str:
        name = "/".join([*parts, partition]) if partition else "/".join(parts)
        return f"{S3_SCHEME}{self.bucket}/{self._join(self.prefix, name)}.parquet"

    @staticmethod
    def _join(prefix: str, name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    def _key(self, location: str) -> str:
        return location.removeprefix(f"{S3_SCHEME}{self.bucket}/")

    def write(self, location: str, frame: pl.DataFrame | pl.LazyFrame) -> int:
        """PUT a frame whole; a lazy one is streamed to a local temporary file first."""
        if isinstance(frame, pl.LazyFrame):
            with tempfile.TemporaryDirectory() as folder:
                staging = Path(folder, "frame.parquet")
                frame.sink_parquet(staging, statistics=True)
                with staging.open("rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=self._key(location), Body=body)
                return staging.stat().st_size
        buffer = io.BytesIO()
        frame.write_parquet(buffer, statistics=True)
        body = buffer.getvalue()
        self.client.put_object(Bucket=self.bucket, Key=self._key(location), Body=body)
        return len(body)

    def _get(self, location: str) -> bytes | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._key(location))
        except self.client.exceptions.NoSuchKey:
            return None
        return reply["Body"].read()

    def read(self, location: str, columns: list[str] | None = None) -> pl.DataFrame:
        body = self._get(location)
        if body is None:
            raise FileNotFoundError(location)
        return pl.read_parquet(io.BytesIO(body), columns=columns)

    def peek(self, location: str, column: str) -> Peek | None:
        """One GET of the whole object (no range reads through boto3's plain client)."""
        body = self._get(location)
        return None if body is None else _peek(io.BytesIO(body), column)

    def exists(self, location: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(location))
        except self.client.exceptions.ClientError:
            return False
        return True

    def scan(self, location: str) -> pl.LazyFrame:
        """The object fetched once, then read lazily (column and row pruning in memory)."""
        body = self._get(location)
        if body is None:
            raise FileNotFoundError(location)
        return pl.read_parquet(io.BytesIO(body)).lazy()


def open_store(base_dir: str, s3: S3Storage | None) -> LocalFolder | S3Prefix:
    """`s3://bucket/prefix` → that prefix (through `s3`, or boto3 defaults); else a folder."""
    if not base_dir.startswith(S3_SCHEME):
        return LocalFolder(base_dir)
    bucket, _, prefix = base_dir.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"{base_dir!r}: an S3 base_dir needs a bucket, s3://bucket[/prefix]")
    return S3Prefix((s3 or S3Storage()).client(), bucket, prefix.strip("/"))
