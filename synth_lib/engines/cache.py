"""Content-addressed response cache and the engine wrapper that makes every stage resumable.

Responses are committed to SQLite chunk by chunk as they come back, so a run killed
mid-stage loses at most the chunk in flight, and the re-run asks the engine only for
what is missing. Transient errors are never cached: a re-run retries exactly those.
Permanent ones (the server refused this exact request) are cached like answers, so a
re-run does not send them again unless the request changes.

Nothing reaches the cache or a stage unvalidated: every answer goes through
`validate_result` on its way in, and every entry again on its way out. An entry that
does not parse, has an unknown schema version or fails validation (say, written by an
older version that cached a lone surrogate) is logged and treated as missing, so the
request is asked again and the entry replaced: a bad entry cannot block a stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, cache_key
from synth_lib.engines.failures import clean_failure_row, failure_rows
from synth_lib.engines.validation import validate_result

log = logging.getLogger(__name__)

# Version 1 entries (no "v" field) are still read, and validated like every entry.
SCHEMA_VERSION = 2
READABLE_VERSIONS = frozenset({1, SCHEMA_VERSION})
_RESULT_FIELDS = {f.name for f in dataclasses.fields(GenerationResult)}


def result_to_json(result: GenerationResult) -> str:
    return json.dumps({"v": SCHEMA_VERSION, **asdict(result)})


def result_from_json(blob: str) -> GenerationResult:
    """Parse one cache entry; raises ValueError naming what is wrong with it."""
    try:
        data: Any = json.loads(blob)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"not an object but {type(data).__name__}")
    version = data.pop("v", 1)
    if version not in READABLE_VERSIONS:
        raise ValueError(f"schema version {version!r}, readable: {sorted(READABLE_VERSIONS)}")
    unknown = set(data) - _RESULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    try:
        return GenerationResult(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL, retrying: SQLite answers "database is locked" at once, without waiting
    for its busy timeout, when several processes open a fresh cache file together."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


class ResponseCache:
    """A SQLite table of key -> result JSON; safe against kill -9 (WAL, per-chunk commits)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        _enable_wal(self._conn)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, result TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS failures (stage TEXT NOT NULL, key TEXT NOT NULL, "
            "run_tag TEXT NOT NULL, row TEXT NOT NULL, shard TEXT NOT NULL DEFAULT '', "
            "PRIMARY KEY (stage, key))"
        )
        columns = {name for _, name, *_ in self._conn.execute("PRAGMA table_info(failures)")}
        if "shard" not in columns:  # a cache written before failures were kept per shard
            self._conn.execute("ALTER TABLE failures ADD COLUMN shard TEXT NOT NULL DEFAULT ''")
        self._conn.commit()
        self.invalid_entries = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, GenerationResult]:
        """The entries for `keys` that parse; unreadable ones are logged and left out."""
        found: dict[str, GenerationResult] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for key, blob in self._select(chunk):
                try:
                    found[key] = result_from_json(blob)
                except ValueError as exc:
                    self.invalid_entries += 1
                    log.warning("response cache entry %s unreadable, asking again: %s", key, exc)
        return found

    def put_many(self, items: Sequence[tuple[str, GenerationResult]]) -> None:
        """Store answers and permanent errors; transient errors stay out, to be re-sent."""
        self._store([(k, result_to_json(r)) for k, r in items if not r.retryable])

    # Storage primitives: a shared backend (`pg_cache.PgResponseCache`) overrides these and
    # the failure-log methods below; parsing and validation stay here, the same for every one.
    def _select(self, keys: Sequence[str]) -> Iterable[tuple[str, str]]:
        marks = ",".join("?" * len(keys))
        return self._conn.execute(f"SELECT key, result FROM responses WHERE key IN ({marks})", keys)

    def _store(self, rows: Sequence[tuple[str, str]]) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)", rows)

    def _failure_blobs(self) -> Iterable[str]:
        return [r for (r,) in self._conn.execute("SELECT row FROM failures")]

    def reset_failures(self, stage: str, run_tag: str, shard: str = "") -> None:
        """Forget `stage`'s failures on `shard` from other runs: only the latest run of each
        (stage, shard) is outstanding; a run of one shard leaves the other shards' alone."""
        with self._conn:
            self._conn.execute(
                "DELETE FROM failures WHERE stage = ? AND shard = ? AND run_tag != ?",
                (stage, shard, run_tag),
            )

    def put_failures(
        self, stage: str, run_tag: str, rows: Sequence[tuple[str, dict]], shard: str = ""
    ) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO failures (stage, key, run_tag, row, shard) "
                "VALUES (?, ?, ?, ?, ?)",
                [(stage, key, run_tag, json.dumps(row), shard) for key, row in rows],
            )

    def failures(self) -> list[dict]:
        """Outstanding failure rows of every stage's latest run (cleaned: they always write)."""
        return [clean_failure_row(json.loads(r)) for r in self._failure_blobs()]

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._conn.close()


@dataclass
class GenerationStats:
    """What one stage's generation cost: the numbers every generating asset reports."""

    requests: int = 0
    cache_hits: int = 0
    engine_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0
    failures: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    cache_invalid: int = 0
    invalid_answers: int = 0
    usage_estimated: int = 0
    served_models: dict[str, int] = field(default_factory=dict)


class CachedEngine:
    """Wraps an engine with the response cache; sends misses in chunks, committing each."""

    def __init__(
        self,
        engine: Engine,
        cache: ResponseCache,
        chunk_size: int = 64,
        stage: str = "unnamed",
        run_tag: str = "",
        shard: str = "",
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.chunk_size = chunk_size
        self.identity = engine.identity
        self.stage = stage
        self.run_tag = run_tag
        self.shard = shard
        self.stats = GenerationStats()
        self.failures: list[dict] = []
        cache.reset_failures(stage, run_tag, shard)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        keys = [cache_key(self.identity, r) for r in requests]
        hits = self._valid_hits(keys, requests)
        results: dict[str, GenerationResult] = {}
        missing: list[tuple[str, GenerationRequest]] = []
        seen: set[str] = set()
        for key, req in zip(keys, requests, strict=True):
            if key in hits:
                continue
            if key not in seen:
                seen.add(key)
                missing.append((key, req))
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            began = time.perf_counter()
            answers = self.engine.generate([req for _, req in chunk])
            self.stats.engine_seconds += time.perf_counter() - began
            self.stats.engine_calls += len(chunk)
            checked = [
                self._checked(req, ans) for (_, req), ans in zip(chunk, answers, strict=True)
            ]
            self.cache.put_many([(key, ans) for (key, _), ans in zip(chunk, checked, strict=True)])
            for (key, _), ans in zip(chunk, checked, strict=True):
                results[key] = ans
        out: list[GenerationResult] = []
        for key, req in zip(keys, requests, strict=True):
            if key in hits:
                res = dataclasses.replace(hits[key], request_id=req.request_id, cached=True)
                self.stats.cache_hits += 1
            else:
                res = dataclasses.replace(results[key], request_id=req.request_id)
                self.stats.prompt_tokens += res.prompt_tokens
                self.stats.completion_tokens += res.completion_tokens
            self.stats.requests += 1
            self.stats.failures += res.finish_reason == "error"
            reason = res.finish_reason
            self.stats.finish_reasons[reason] = self.stats.finish_reasons.get(reason, 0) + 1
            if res.served_model is not None:
                served = self.stats.served_models
                served[res.served_model] = served.get(res.served_model, 0) + 1
            out.append(res)
        self._record_failures(keys, requests, out)
        return out

    def _valid_hits(
        self, keys: Sequence[str], requests: Sequence[GenerationRequest]
    ) -> dict[str, GenerationResult]:
        """Cache entries that still validate; any other is logged and asked again."""
        before = self.cache.invalid_entries
        hits = self.cache.get_many(keys)
        valid: dict[str, GenerationResult] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in hits or key in valid:
                continue
            checked = validate_result(req, hits[key])
            if checked.retryable:  # failed validation, or a transient error stored by mistake
                self.cache.invalid_entries += 1
                log.warning("response cache entry %s invalid, asking again: %s", key, checked.error)
                continue
            valid[key] = checked
        self.stats.cache_invalid += self.cache.invalid_entries - before
        return valid

    def _checked(self, request: GenerationRequest, answer: GenerationResult) -> GenerationResult:
        """`answer` validated; counts what validation refused or repaired."""
        checked = validate_result(request, answer)
        if checked.finish_reason == "error" and answer.finish_reason != "error":
            self.stats.invalid_answers += 1
        if any(note.startswith("usage_estimated") for note in checked.notes):
            self.stats.usage_estimated += 1
        return checked

    def _record_failures(
        self,
        keys: Sequence[str],
        requests: Sequence[GenerationRequest],
        results: Sequence[GenerationResult],
    ) -> None:
        bad = [(k, q, r) for k, q, r in zip(keys, requests, results, strict=True) if not r.ok]
        if not bad:
            return
        rows = failure_rows(
            self.stage, [q for _, q, _ in bad], [r for _, _, r in bad], self.identity
        )
        self.failures.extend(rows)
        self.cache.put_failures(
            self.stage,
            self.run_tag,
            list(zip([k for k, _, _ in bad], rows, strict=True)),
            self.shard,
        )
