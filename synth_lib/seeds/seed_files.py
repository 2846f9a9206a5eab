"""One shard of a user's seed file: its lines, sorted into prose, code and math seeds.

The row's fields decide its kind (see `synth_lib.seeds.seed_dir`); a row that fits none,
or whose fields have the wrong type, is quarantined with file, line and reason, and the
rest of the shard goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth_lib.provenance.schema import Source
from synth_lib.seeds.cleaning import RawSeed
from synth_lib.seeds.gsm8k import gold_answer
from synth_lib.seeds.readers import Reject, read_records

DEFAULT_LICENSE = "unknown"


@dataclass
class FileShard:
    """The seeds of one file shard by kind, and its quarantined rows."""

    text: list[RawSeed] = field(default_factory=list)
    code: list[RawSeed] = field(default_factory=list)
    math: list[RawSeed] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _str_fields(record: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        if not isinstance(record.get(name), str):
            got = type(record.get(name)).__name__
            return f"field {name!r} must be a string, got {got}"
    return None


def _kind(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(kind, reason it is refused)."""
    if "code" in record:
        return "code", _str_fields(record, ("code",))
    if "question" in record or "answer" in record:
        return "math", _str_fields(record, ("question", "answer"))
    if "text" in record:
        return "text", _str_fields(record, ("text",))
    return None, f"no `text`, `question`/`answer` or `code` field (has {sorted(record)})"


def read_file_shard(path: Path, display_name: str, lines: range) -> FileShard:
    """Seeds on `lines` (1-based line or row numbers) of the seed file at `path`."""
    read = read_records(path, {})
    shard = FileShard(rejects=[r for r in read.rejects if r.line in lines])
    for line, record in read.records:
        if line not in lines:
            continue
        kind, reason = _kind(record)
        raw = str(record)[:300]
        if reason is None and kind == "math" and gold_answer(record["answer"]) is None:
            reason = "answer has no '####' final answer"
        if reason is not None:
            shard.rejects.append(Reject(display_name, line, reason, raw))
            continue
        source = Source(
            str(record.get("source") or display_name),
            f"{display_name}:{line}",
            str(record.get("license") or DEFAULT_LICENSE),
        )
        if kind == "code":
            payload = {
                "text": record["code"],
                "name": str(record.get("name") or ""),
                "module": str(record.get("module") or display_name),
            }
            shard.code.append(RawSeed(payload, source, ("text",)))
        elif kind == "math":
            payload = {
                "question": record["question"],
                "answer": record["answer"],
                "gold": gold_answer(record["answer"]),
            }
            shard.math.append(RawSeed(payload, source, ("question", "answer")))
        else:
            payload = {"text": record["text"], "title": str(record.get("title") or "")}
            shard.text.append(RawSeed(payload, source, ("text",)))
    return shard
