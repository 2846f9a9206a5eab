"""Math seeds with gold answers: GSM8K-format JSONL or Parquet (`question`, `answer`)."""

from __future__ import annotations

import re
from pathlib import Path

from synth_lib.provenance.schema import Source
from synth_lib.seeds.cleaning import RawSeed
from synth_lib.seeds.readers import Reject, read_records

LICENSE = "MIT"
FIELDS = {"question": str, "answer": str}
_GOLD = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


class SeedFileMissing(FileNotFoundError):
    """The configured seed file is not there; the message says how to point at one."""


def gold_answer(answer: str) -> str | None:
    """The final answer after '####', without thousands separators; None if absent."""
    match = _GOLD.search(answer)
    if not match:
        return None
    return match.group(1).replace(",", "").strip() or None


def gsm8k_seeds(path: str | Path, dataset: str = "gsm8k") -> tuple[list[RawSeed], list[Reject]]:
    """Load problems from `path`; rows without a '####' gold answer are quarantined too."""
    path = Path(path)
    if not path.is_file():
        raise SeedFileMissing(
            f"math seed file {path} does not exist. Point the math_seeds config `path` (or "
            "SYNTH_GSM8K_PATH) at a GSM8K-format JSONL/Parquet file with `question` and `answer` "
            "fields, or set `enabled: false` to run without math seeds."
        )
    read = read_records(path, FIELDS)
    seeds: list[RawSeed] = []
    rejects = list(read.rejects)
    for line, record in read.records:
        gold = gold_answer(record["answer"])
        if gold is None:
            rejects.append(
                Reject(str(path), line, "answer has no '####' final answer", record["answer"][:300])
            )
            continue
        seeds.append(
            RawSeed(
                payload={"question": record["question"], "answer": record["answer"], "gold": gold},
                source=Source(dataset, f"{path.name}:{line}", LICENSE),
                text_fields=("question", "answer"),
            )
        )
    return seeds, rejects
