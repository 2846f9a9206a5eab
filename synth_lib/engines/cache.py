"""Content-addressed response cache and the engine wrapper that makes every stage resumable.

Responses are committed to SQLite chunk by chunk as they come back, so a run killed
mid-stage loses at most the chunk in flight, and the re-run asks the engine only for
what is missing. Errors are never cached: a re-run retries exactly the failed requests.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult, cache_key
from synth_lib.engines.failures import failure_rows


class ResponseCache:
    """A SQLite table of key -> result JSON; safe against kill -9 (WAL, per-chunk commits)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, result TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS failures (stage TEXT NOT NULL, key TEXT NOT NULL, "
            "run_tag TEXT NOT NULL, row TEXT NOT NULL, PRIMARY KEY (stage, key))"
        )
        self._conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, GenerationResult]:
        found: dict[str, GenerationResult] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._conn.execute(
                f"SELECT key, result FROM responses WHERE key IN ({marks})", chunk
            ):
                found[key] = GenerationResult(**json.loads(blob))
        return found

    def put_many(self, items: Sequence[tuple[str, GenerationResult]]) -> None:
        rows = [(k, json.dumps(asdict(r))) for k, r in items if r.finish_reason != "error"]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?)", rows)

    def reset_failures(self, stage: str, run_tag: str) -> None:
        """Forget `stage`'s failures from other runs: only the latest run's are outstanding."""
        with self._conn:
            self._conn.execute(
                "DELETE FROM failures WHERE stage = ? AND run_tag != ?", (stage, run_tag)
            )

    def put_failures(self, stage: str, run_tag: str, rows: Sequence[tuple[str, dict]]) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)",
                [(stage, key, run_tag, json.dumps(row)) for key, row in rows],
            )

    def failures(self) -> list[dict]:
        """Outstanding failure rows of every stage's latest run."""
        return [json.loads(r) for (r,) in self._conn.execute("SELECT row FROM failures")]

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


class CachedEngine:
    """Wraps an engine with the response cache; sends misses in chunks, committing each."""

    def __init__(
        self,
        engine: Engine,
        cache: ResponseCache,
        chunk_size: int = 64,
        stage: str = "unnamed",
        run_tag: str = "",
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.chunk_size = chunk_size
        self.identity = engine.identity
        self.stage = stage
        self.run_tag = run_tag
        self.stats = GenerationStats()
        self.failures: list[dict] = []
        cache.reset_failures(stage, run_tag)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        keys = [cache_key(self.identity, r) for r in requests]
        hits = self.cache.get_many(keys)
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
            self.cache.put_many([(key, ans) for (key, _), ans in zip(chunk, answers, strict=True)])
            for (key, _), ans in zip(chunk, answers, strict=True):
                results[key] = ans
        out: list[GenerationResult] = []
        for key, req in zip(keys, requests, strict=True):
            if key in hits:
                res = GenerationResult(**{**asdict(hits[key]), "request_id": req.request_id})
                res.cached = True
                self.stats.cache_hits += 1
            else:
                res = GenerationResult(**{**asdict(results[key]), "request_id": req.request_id})
                self.stats.prompt_tokens += res.prompt_tokens
                self.stats.completion_tokens += res.completion_tokens
            self.stats.requests += 1
            self.stats.failures += res.finish_reason == "error"
            reason = res.finish_reason
            self.stats.finish_reasons[reason] = self.stats.finish_reasons.get(reason, 0) + 1
            out.append(res)
        self._record_failures(keys, requests, out)
        return out

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
            self.stage, self.run_tag, list(zip([k for k, _, _ in bad], rows, strict=True))
        )
