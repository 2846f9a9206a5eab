"""What the shared PostgreSQL response cache costs against the per-box SQLite one.

A stage writes its answers in chunks as they come back and reads every key once at the
start of the stage (its hits). Timed, per backend, side by side: writing `--rows` answers
of ~1 KB in chunks of `--chunk` (one commit each), then reading all of them back
(parsing included); both in a fresh store each round. PostgreSQL: databases created
before timing on `--pg`, dropped afterwards.

    .venv/bin/python benchmarks/shared_cache_bench.py --rows 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import psycopg2
from timing import interleaved

from synth_lib.engines.base import GenerationResult
from synth_lib.engines.cache import ResponseCache
from synth_lib.engines.pg_cache import PgResponseCache


def answers(n: int) -> list[tuple[str, GenerationResult]]:
    text = "lorem ipsum dolor sit amet " * 40  # ~1 KB, the size of a short answer
    return [
        (f"{i:064x}", GenerationResult(f"r{i}", f"{i} {text}", "stop", 200, 250)) for i in range(n)
    ]


def run(cache: ResponseCache, rows: list[tuple[str, GenerationResult]], chunk: int) -> int:
    for start in range(0, len(rows), chunk):
        cache.put_many(rows[start : start + chunk])
    found = cache.get_many([key for key, _ in rows])
    cache.close()
    return len(found)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    rows = answers(args.rows)
    admin = psycopg2.connect(f"{args.pg}/postgres")
    admin.autocommit = True
    folder = Path(tempfile.mkdtemp())

    def sqlite() -> int:
        return run(ResponseCache(folder / f"{uuid.uuid4().hex}.sqlite"), rows, args.chunk)

    databases = [f"synth_bench_{uuid.uuid4().hex[:8]}" for _ in range(args.repeats + 1)]
    for name in databases:  # created before timing: a stage's store already exists
        admin.cursor().execute(f"CREATE DATABASE {name}")
    fresh = iter(databases)

    def postgres() -> int:
        return run(PgResponseCache(f"{args.pg}/{next(fresh)}"), rows, args.chunk)

    try:
        timed = interleaved({"sqlite": sqlite, "postgres": postgres}, args.repeats)
    finally:
        for name in databases:
            admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    for name, (found, seconds) in timed.items():
        assert found == args.rows, (name, found)
        print(f"{name:9s} {seconds:7.3f} s median  {args.rows / seconds:9.0f} entries/s")
    ratio = timed["postgres"][1] / timed["sqlite"][1]
    print(f"postgres / sqlite: {ratio:.2f}x  ({args.rows} entries, chunks of {args.chunk})")
    admin.close()


if __name__ == "__main__":
    main()
