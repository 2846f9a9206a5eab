"""Parts of the machine some tests need, and what happens when one is missing.

Without a flag a missing part skips the test, the reason naming the part; with
`SYNTH_REQUIRE_<PART>=1` (or `SYNTH_REQUIRE_ALL=1`, which sets every part's flag; CI sets
it) the test fails instead, so a CI machine that lost PostgreSQL or the GSM8K data cannot
go green by skipping.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ALL = "SYNTH_REQUIRE_ALL"

# part -> what it is; its flag is SYNTH_REQUIRE_<PART>
PARTS: dict[str, str] = {
    "postgres": "PostgreSQL (psycopg2, at SYNTH_TEST_PG_HOST or 127.0.0.1:5432)",
    "gsm8k": "GSM8K data (SYNTH_GSM8K_PATH, SYNTH_GSM8K_TEST_PATH)",
    "sandbox": "the bubblewrap code sandbox",
    "ui": "Chromium for the UI test",
    "s3": "the S3 test server (moto[server])",
}

GSM8K_SPLITS = {"train": "SYNTH_GSM8K_PATH", "test": "SYNTH_GSM8K_TEST_PATH"}


def flag(part: str) -> str:
    """The environment variable that makes a missing `part` fail its tests."""
    if part not in PARTS:
        raise KeyError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    return f"SYNTH_REQUIRE_{part.upper()}"


def apply_require_all(environ: MutableMapping[str, str] = os.environ) -> None:
    """SYNTH_REQUIRE_ALL=1 turns on every part's flag (one that is set explicitly stays)."""
    if environ.get(REQUIRE_ALL) == "1":
        for part in PARTS:
            environ.setdefault(flag(part), "1")


def required(part: str) -> bool:
    return os.environ.get(flag(part)) == "1"


def missing(part: str, reason: str) -> NoReturn:
    """Skip (or, when the part is required, fail) the current test for a missing part."""
    message = f"[{part}] {reason}"
    if required(part):
        pytest.fail(f"{flag(part)}=1 but {PARTS[part]} is missing: {message}", pytrace=False)
    pytest.skip(f"{message} ({flag(part)}=1 makes this fail)")


def gsm8k_file(split: str) -> Path:
    """The GSM8K split named by its environment variable (`make test` sets both)."""
    variable = GSM8K_SPLITS[split]
    value = os.environ.get(variable, "")
    if not value:
        missing("gsm8k", f"{variable} is not set")
    path = Path(value)
    if not path.is_file():
        missing("gsm8k", f"{variable}={value} is not a file")
    return path
