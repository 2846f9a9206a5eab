"""`synth dedup IN OUT`: mark exact and near duplicates in a JSONL or Parquet file.

The output keeps every input row and column and adds `cluster_id` (the id of the row
the cluster keeps), `kept` and `duplicate_reason`. The file readers here are shared with
`synth decontam`: malformed input stops with the file, the row and the reason (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from synth_lib.curation.dedup import DedupConfig, find_duplicates

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Malformed input, located: `file: row N: reason` (row omitted for whole-file problems)."""

    def __init__(self, path: Path, reason: str, row: int | None = None):
        where = f"{path}: row {row}: " if row is not None else f"{path}: "
        super().__init__(where + reason)


@dataclass
class Table:
    """Rows read from IN: JSON records as parsed (so they are written back unchanged) or a frame."""

    path: Path
    texts: list[str]
    records: list[dict[str, Any]] | None = None
    frame: pl.DataFrame | None = None
    columns: list[str] = field(default_factory=list)

    def column(self, name: str) -> list[Any] | None:
        if name not in self.columns:
            return None
        if self.frame is not None:
            return self.frame.get_column(name).to_list()
        return [r.get(name) for r in self.records or []]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    raise InputError(path, f"unsupported file type {suffix!r}: use .jsonl or .parquet")


def read_table(path: Path, text_column: str = "text") -> Table:
    """Read IN; every row must have a string `text_column`."""
    kind = _format(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if kind == "parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # pyarrow/polars raise many types for a damaged file
            raise InputError(path, f"not a readable Parquet file ({exc})") from exc
        if text_column not in frame.columns:
            raise InputError(path, f"missing column {text_column!r} (columns: {frame.columns})")
        if frame.schema[text_column] != pl.Utf8:
            raise InputError(
                path, f"column {text_column!r} is {frame.schema[text_column]}, not a string", 1
            )
        nulls = frame.get_column(text_column).is_null().arg_true()
        if len(nulls):
            raise InputError(path, f"{text_column!r} is null", int(nulls[0]) + 1)
        texts = frame.get_column(text_column).to_list()
        return Table(path, texts, frame=frame, columns=frame.columns)
    records: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8-sig" if line_no == 1 else "utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InputError(path, f"invalid JSON ({exc})", line_no) from exc
            if not isinstance(record, dict):
                raise InputError(
                    path, f"expected a JSON object, got {type(record).__name__}", line_no
                )
            if text_column not in record:
                raise InputError(path, f"missing field {text_column!r}", line_no)
            if not isinstance(record[text_column], str):
                got = type(record[text_column]).__name__
                raise InputError(
                    path, f"field {text_column!r} must be a string, got {got}", line_no
                )
            records.append(record)
            columns.update(dict.fromkeys(record))
    return Table(path, [r[text_column] for r in records], records=records, columns=list(columns))


def write_table(table: Table, out: Path, added: dict[str, list[Any]]) -> None:
    """Write IN's rows plus the `added` columns to OUT (format by extension), atomically."""
    kind = _format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if kind == "jsonl":
        rows = table.records if table.records is not None else table.frame.to_dicts()  # type: ignore[union-attr]
        with staging.open("w", encoding="utf-8") as handle:
            for i, row in enumerate(rows):
                merged = {**row, **{name: values[i] for name, values in added.items()}}
                handle.write(json.dumps(merged, ensure_ascii=False, default=str) + "\n")
    else:
        frame = table.frame
        if frame is None:
            frame = pl.DataFrame(table.records, infer_schema_length=None)
        frame = frame.with_columns(pl.Series(name, values) for name, values in added.items())
        frame.write_parquet(staging)
    os.replace(staging, out)


def _run(args: argparse.Namespace) -> int:
    try:
        table = read_table(Path(args.input), args.text_column)
        config = DedupConfig(
            ngram=args.ngram,
            num_perm=args.num_perm,
            bands=args.bands,
            rows=args.rows,
            threshold=args.threshold,
            max_shingle_share=args.max_shingle_share,
        )
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ids = table.column("id")
    synthetic = table.column("is_synthetic")
    result = find_duplicates(
        table.texts,
        keys=[str(i) for i in ids] if ids is not None else None,
        is_synthetic=[bool(s) if s is not None else True for s in synthetic]
        if synthetic is not None
        else None,
        config=config,
    )
    added = {
        "cluster_id": result.cluster_id,
        "kept": result.kept.tolist(),
        "duplicate_reason": result.reason,
    }
    write_table(table, Path(args.output), added)
    print(json.dumps(result.stats()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = DedupConfig()
    parser = subparsers.add_parser(
        "dedup",
        help="mark exact and near duplicates (MinHash LSH) in a JSONL/Parquet file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="input .jsonl or .parquet with a text column")
    parser.add_argument("output", metavar="OUT", help="output .jsonl or .parquet")
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        help="estimated Jaccard of word n-gram sets at or above which two rows are duplicates",
    )
    parser.add_argument("--ngram", type=int, default=defaults.ngram, help="words per shingle")
    parser.add_argument("--num-perm", type=int, default=defaults.num_perm)
    parser.add_argument("--bands", type=int, default=0, help="LSH bands (0: fit the threshold)")
    parser.add_argument("--rows", type=int, default=0, help="MinHash rows per band (0: fit)")
    parser.add_argument(
        "--max-shingle-share",
        type=float,
        default=defaults.max_shingle_share,
        help="ignore shingles found in more than this share of rows (templates); 1.0 keeps all",
    )
    parser.set_defaults(handler=_run)
