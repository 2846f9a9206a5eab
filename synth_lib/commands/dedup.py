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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # Polars is imported only for Parquet: JSONL runs start faster without it
    import polars as pl

EXIT_BAD_INPUT = 2
_BOM = b"\xef\xbb\xbf"


class InputError(ValueError):
    """Malformed input, located: `file: row N: reason` (row omitted for whole-file problems)."""

    def __init__(self, path: Path, reason: str, row: int | None = None):
        where = f"{path}: row {row}: " if row is not None else f"{path}: "
        super().__init__(where + reason)


@dataclass
class Table:
    """Rows read from IN: JSONL lines as read (written back unchanged) or a Parquet frame.

    For JSONL, `kept` holds the per-row values of the columns asked for when reading
    (None where a row lacks one); other fields stay in `lines` only.
    """

    path: Path
    texts: list[str]
    lines: list[bytes] | None = None
    frame: pl.DataFrame | None = None
    columns: list[str] = field(default_factory=list)
    kept: dict[str, list[Any]] = field(default_factory=dict)

    def column(self, name: str) -> list[Any] | None:
        """Values of a column (None if no row has it); JSONL: only columns kept on reading."""
        if name not in self.columns:
            return None
        if self.frame is not None:
            return self.frame.get_column(name).to_list()
        return self.kept[name]

    def records(self) -> list[dict[str, Any]]:
        """Every row as a dict (parses JSONL lines again: only for outputs that need it)."""
        if self.frame is not None:
            return self.frame.to_dicts()
        return [json.loads(line) for line in self.lines or []]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    raise InputError(path, f"unsupported file type {suffix!r}: use .jsonl or .parquet")


def _read_parquet(path: Path, text_column: str) -> Table:
    import polars as pl

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


def _loads(raw: bytes) -> Any:
    """One JSON line: orjson (twice as fast), else the stdlib, which also reads NaN and
    lone surrogates; its error message locates the problem."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw.decode("utf-8"))


def _read_jsonl_fast(
    path: Path, rows: list[bytes], text_column: str, keep: Sequence[str]
) -> Table | None:
    """All rows parsed at once by orjson, or None when any row needs `_read_jsonl`: a parse
    error or a missing/non-string text (to locate it), or a float where orjson may have
    rounded an integer past 64 bits."""
    lines = [raw for raw in rows if not raw.isspace()]
    try:
        records = [orjson.loads(raw) for raw in lines]
        texts = [record.get(text_column) for record in records]
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not all(type(text) is str for text in texts):
        return None
    kept = {name: [record.get(name) for record in records] for name in keep}
    if any(float in map(type, values) for values in kept.values()):
        return None
    columns = list(dict.fromkeys(chain.from_iterable(records)))
    return Table(path, texts, lines=lines, columns=columns, kept=kept)


def _read_jsonl(path: Path, text_column: str, keep: Sequence[str]) -> Table:
    with path.open("rb") as handle:
        rows = list(handle)
    if rows and rows[0].startswith(_BOM):
        rows[0] = rows[0][len(_BOM) :]
    fast = _read_jsonl_fast(path, rows, text_column, keep)
    if fast is not None:
        return fast
    lines: list[bytes] = []
    texts: list[str] = []
    kept: dict[str, list[Any]] = {name: [] for name in keep}
    columns: dict[str, None] = {}
    for line_no, raw in enumerate(rows, start=1):
        if raw.isspace():
            continue
        try:
            record = _loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, f"invalid JSON ({exc})", line_no) from exc
        if not isinstance(record, dict):
            raise InputError(path, f"expected a JSON object, got {type(record).__name__}", line_no)
        text = record.get(text_column)
        if not isinstance(text, str):
            if text_column not in record:
                raise InputError(path, f"missing field {text_column!r}", line_no)
            got = type(text).__name__
            raise InputError(path, f"field {text_column!r} must be a string, got {got}", line_no)
        values = [record.get(name) for name in keep]
        if float in map(type, values):  # maybe an integer past 64 bits, which orjson rounds
            record = json.loads(raw.decode("utf-8"))
            values = [record.get(name) for name in keep]
        lines.append(raw)
        texts.append(text)
        for column, value in zip(kept.values(), values, strict=True):
            column.append(value)
        if record.keys() != columns.keys():
            columns.update(dict.fromkeys(record))
    return Table(path, texts, lines=lines, columns=list(columns), kept=kept)


def read_table(path: Path, text_column: str = "text", keep: Sequence[str] = ()) -> Table:
    """Read IN; every row must have a string `text_column`. JSONL rows keep their bytes and
    the values of the `keep` columns; a Parquet file is read as a frame."""
    kind = _format(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if kind == "parquet":
        return _read_parquet(path, text_column)
    return _read_jsonl(path, text_column, keep)


def _json_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return encode_basestring(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _appended_lines(
    lines: list[bytes], added: dict[str, list[Any]]
) -> Iterator[bytes | memoryview]:
    """Each JSON object line up to its closing brace (not copied), then the added fields."""
    fields = [
        [f", {encode_basestring(name)}: {value}" for value in map(_json_value, values)]
        for name, values in added.items()
    ]
    for raw, *parts in zip(lines, *fields, strict=True):
        yield memoryview(raw)[: raw.rindex(b"}")]
        yield ("".join(parts) + "}\n").encode()


def write_table(table: Table, out: Path, added: dict[str, list[Any]]) -> None:
    """Write IN's rows plus the `added` columns to OUT (format by extension), atomically.

    JSONL to JSONL appends the new fields to each line as read, unless a row already has
    a field of that name (then the row is parsed and the field replaced)."""
    kind = _format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if kind == "jsonl" and table.lines is not None and not set(added) & set(table.columns):
        with staging.open("wb") as handle:
            handle.writelines(_appended_lines(table.lines, added))
    elif kind == "jsonl":
        with staging.open("w", encoding="utf-8") as handle:
            for i, row in enumerate(table.records()):
                merged = {**row, **{name: values[i] for name, values in added.items()}}
                handle.write(json.dumps(merged, ensure_ascii=False, default=str) + "\n")
    else:
        import polars as pl

        frame = table.frame
        if frame is None:
            frame = pl.DataFrame(table.records(), infer_schema_length=None)
        frame = frame.with_columns(pl.Series(name, values) for name, values in added.items())
        frame.write_parquet(staging)
    os.replace(staging, out)


def _run(args: argparse.Namespace) -> int:
    from synth_lib.curation.dedup import DedupConfig, find_duplicates

    try:
        table = read_table(Path(args.input), args.text_column, keep=("id", "is_synthetic"))
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
    from synth_lib.curation.dedup import DedupConfig

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
