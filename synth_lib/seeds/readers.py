"""Record readers that quarantine bad rows instead of failing the file.

A bad JSON line, a truncated last line, a missing field or a wrong type rejects that row
alone, with file, line and reason; every good row goes on. A UTF-8 BOM is stripped, not
treated as damage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

RAW_PREVIEW_CHARS = 300


@dataclass(frozen=True)
class Reject:
    """A quarantined input row: where it was and why it was refused."""

    file: str
    line: int
    reason: str
    raw: str


@dataclass
class ReadResult:
    """Good records with their line numbers, and the quarantined ones."""

    records: list[tuple[int, dict[str, Any]]]
    rejects: list[Reject]


def _type_error(record: Mapping[str, Any], fields: Mapping[str, type]) -> str | None:
    for name, expected in fields.items():
        if name not in record or record[name] is None:
            return f"missing field {name!r}"
        value = record[name]
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            return f"field {name!r} must be {expected.__name__}, got {type(value).__name__}"
    return None


def read_jsonl(path: str | Path, fields: Mapping[str, type]) -> ReadResult:
    """Read JSON Lines; each line must be an object with `fields` of the given types."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    ends_cleanly = data.endswith(b"\n")
    result = ReadResult(records=[], rejects=[])
    for number, raw_bytes in enumerate(lines, start=1):
        if not raw_bytes.strip():
            continue
        raw = raw_bytes.decode("utf-8", errors="replace")
        is_last = number == len(lines) and not ends_cleanly
        reason = None
        try:
            record = json.loads(raw_bytes.decode("utf-8"))
        except UnicodeDecodeError as exc:
            reason = f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
        except json.JSONDecodeError as exc:
            kind = "truncated last line" if is_last else "invalid JSON"
            reason = f"{kind}: {exc.msg} at column {exc.colno}"
        else:
            if not isinstance(record, dict):
                reason = f"expected a JSON object, got {type(record).__name__}"
            else:
                reason = _type_error(record, fields)
        if reason is None:
            result.records.append((number, record))
        else:
            result.rejects.append(Reject(str(path), number, reason, raw[:RAW_PREVIEW_CHARS]))
    return result


def read_parquet(path: str | Path, fields: Mapping[str, type]) -> ReadResult:
    """Read Parquet rows; a missing column rejects every row, a wrong-typed value its row."""
    path = Path(path)
    table = pq.read_table(path)
    result = ReadResult(records=[], rejects=[])
    missing = [name for name in fields if name not in table.column_names]
    for number, record in enumerate(table.to_pylist(), start=1):
        reason = (
            f"missing column(s) {missing} (file has {table.column_names})"
            if missing
            else _type_error(record, fields)
        )
        if reason is None:
            result.records.append((number, record))
        else:
            raw = json.dumps(record, default=str)[:RAW_PREVIEW_CHARS]
            result.rejects.append(Reject(str(path), number, reason, raw))
    return result


def read_records(path: str | Path, fields: Mapping[str, type]) -> ReadResult:
    """Dispatch on the file's extension: .jsonl/.json → JSON Lines, .parquet → Parquet."""
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return read_jsonl(path, fields)
    if suffix == ".parquet":
        return read_parquet(path, fields)
    raise ValueError(f"{path}: unsupported seed file type {suffix!r} (use .jsonl or .parquet)")
