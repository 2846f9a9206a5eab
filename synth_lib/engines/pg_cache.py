"""The response cache and failure log on PostgreSQL, so every worker of a fleet sees one state.

With the SQLite cache under SYNTH_HOME each worker has its own answers: a step re-run on
another box (a killed worker, a retry) asks the engine again, and `generation_failures`
sees only the failures of the box it runs on. `PgResponseCache` keeps the same tables in
the PostgreSQL the Dagster instance already uses and the same interface as `ResponseCache`;
parsing, entry versions and validation on read are `ResponseCache`'s own code, unchanged.

Concurrent writers are expected (two workers answering the same request): writes are
upserts, keys are deduplicated and sorted within a statement (so two writers lock rows in
the same order and cannot deadlock), and each chunk is one autocommitted statement, so a
killed worker loses at most the chunk in flight, as with SQLite.

`open_response_cache(url, sqlite_path)` picks the backend: a `postgresql://` URL, else the
SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from synth_lib.engines.cache import ResponseCache

PG_SCHEMES = ("postgresql://", "postgres://")
# Serialises table creation: concurrent CREATE TABLE IF NOT EXISTS can fail in PostgreSQL.
_DDL_LOCK = 0x5E7AC4E
_DDL = (
    "CREATE TABLE IF NOT EXISTS synth_responses (key TEXT PRIMARY KEY, result TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS synth_failures (stage TEXT NOT NULL, key TEXT NOT NULL, "
    "run_tag TEXT NOT NULL, row TEXT NOT NULL, shard TEXT NOT NULL DEFAULT '', "
    "PRIMARY KEY (stage, key))",
    # a table created before failures were kept per shard
    "ALTER TABLE synth_failures ADD COLUMN IF NOT EXISTS shard TEXT NOT NULL DEFAULT ''",
)


class PgResponseCache(ResponseCache):
    """`ResponseCache` with its two tables in PostgreSQL (`url`: a libpq connection URL)."""

    def __init__(self, url: str, password: str = "", connect_timeout: int = 10) -> None:
        import psycopg2  # only a PostgreSQL deployment needs the driver loaded

        self.url = url
        extra = {"password": password} if password else {}
        self._conn = psycopg2.connect(url, connect_timeout=connect_timeout, **extra)
        with self._conn, self._conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for statement in _DDL:
                cur.execute(statement)
        self._conn.autocommit = True
        self.invalid_entries = 0

    def _select(self, keys: Sequence[str]) -> Iterable[tuple[str, str]]:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT key, result FROM synth_responses WHERE key = ANY(%s)", (list(keys),)
            )
            return cur.fetchall()

    def _store(self, rows: Sequence[tuple[str, str]]) -> None:
        from psycopg2.extras import execute_values

        unique = sorted(dict(rows).items())
        if not unique:
            return
        with self._conn.cursor() as cur:
            execute_values(
                cur,
                "INSERT INTO synth_responses (key, result) VALUES %s "
                "ON CONFLICT (key) DO UPDATE SET result = EXCLUDED.result",
                unique,
                page_size=len(unique),
            )

    def _failure_blobs(self) -> Iterable[str]:
        with self._conn.cursor() as cur:
            cur.execute("SELECT row FROM synth_failures ORDER BY stage, key")
            return [row for (row,) in cur.fetchall()]

    def reset_failures(self, stage: str, run_tag: str, shard: str = "") -> None:
        with self._conn.cursor() as cur:
            cur.execute(
                "DELETE FROM synth_failures WHERE stage = %s AND shard = %s AND run_tag != %s",
                (stage, shard, run_tag),
            )

    def put_failures(
        self, stage: str, run_tag: str, rows: Sequence[tuple[str, dict]], shard: str = ""
    ) -> None:
        from psycopg2.extras import execute_values

        unique = sorted({key: json.dumps(row) for key, row in rows}.items())
        if not unique:
            return
        with self._conn.cursor() as cur:
            execute_values(
                cur,
                "INSERT INTO synth_failures (stage, key, run_tag, row, shard) VALUES %s "
                "ON CONFLICT (stage, key) DO UPDATE "
                "SET run_tag = EXCLUDED.run_tag, row = EXCLUDED.row, shard = EXCLUDED.shard",
                [(stage, key, run_tag, row, shard) for key, row in unique],
                page_size=len(unique),
            )

    def __len__(self) -> int:
        with self._conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM synth_responses")
            return cur.fetchone()[0]


def open_response_cache(url: str, sqlite_path: str | Path, password: str = "") -> ResponseCache:
    """The shared PostgreSQL cache for a postgresql:// `url`; empty: SQLite at `sqlite_path`."""
    if not url:
        return ResponseCache(sqlite_path)
    if url.startswith(PG_SCHEMES):
        return PgResponseCache(url, password=password)
    raise ValueError(f"response cache URL {url!r}: expected postgresql://... or empty for SQLite")
