"""The seed folder users drop files into: a local directory or an `s3://bucket/prefix`.

Files are JSON Lines (`.jsonl`, `.json`, `.ndjson`) or Parquet. A row with `code` is a code
seed, one with `question` and `answer` a math seed (GSM8K format, `#### gold` at the end of
the answer), one with `text` a prose seed; optional `license` and `source` (dataset name)
columns, and `title` for prose. Anything else is quarantined with its file and line.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq

SEED_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet")


@dataclass(frozen=True, order=True)
class SeedFile:
    """A seed file as listed: its name relative to the folder and a change marker."""

    name: str
    modified: float
    size: int


def _s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_client():
    import boto3

    endpoint = os.environ.get("SYNTH_S3_ENDPOINT_URL") or None
    region = os.environ.get("SYNTH_S3_REGION") or None
    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


def list_seed_files(root: str) -> list[SeedFile]:
    """Seed files under `root`, sorted by name; a missing local folder lists nothing."""
    if root.startswith("s3://"):
        bucket, prefix = _s3_parts(root)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        files = []
        pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name.lower().endswith(SEED_SUFFIXES):
                    files.append(SeedFile(name, obj["LastModified"].timestamp(), obj["Size"]))
        return sorted(files)
    folder = Path(root)
    if not folder.is_dir():
        return []
    return sorted(
        SeedFile(str(p.relative_to(folder)), p.stat().st_mtime, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and p.name.lower().endswith(SEED_SUFFIXES) and not p.name.startswith(".")
    )


def local_copy(root: str, name: str) -> Path:
    """A local path holding the file's bytes (downloaded once per process for s3://)."""
    if not root.startswith("s3://"):
        return Path(root, name)
    bucket, prefix = _s3_parts(root)
    key = f"{prefix.rstrip('/')}/{name}" if prefix else name
    target = Path(tempfile.gettempdir(), "synth-seeds", bucket, key)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        _s3_client().download_file(bucket, key, str(partial))
        os.replace(partial, target)
    return target


def count_records(path: Path) -> int:
    """Lines of a JSONL file (its last line even without a newline), rows of a Parquet file."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    data = path.read_bytes()
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def benchmark_dir_files(root: str) -> list[str]:
    """Local paths of the benchmark files under `root` (a folder or s3:// prefix; "": none)."""
    if not root:
        return []
    return [str(local_copy(root, f.name)) for f in list_seed_files(root)]
