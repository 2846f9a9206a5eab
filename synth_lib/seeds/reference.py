"""Text seeds: the Python language reference that ships with CPython (`pydoc_data.topics`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from synth_lib.provenance.schema import Source
from synth_lib.seeds.cleaning import RawSeed

LICENSE = "PSF-2.0"
DATASET = "python-language-reference"


def split_passages(text: str, min_chars: int, max_chars: int) -> list[str]:
    """Greedy paragraph packing: consecutive paragraphs joined until `max_chars`."""
    passages: list[str] = []
    current: list[str] = []
    size = 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        if current and size + len(para) > max_chars:
            passages.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        passages.append("\n\n".join(current))
    return [p for p in passages if len(p) >= min_chars]


def reference_passages(min_chars: int = 300, max_chars: int = 1200) -> Iterator[RawSeed]:
    """Every topic of the language reference, split into passages of bounded size."""
    from pydoc_data.topics import topics

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for topic in sorted(topics):
        for index, passage in enumerate(split_passages(topics[topic], min_chars, max_chars)):
            yield RawSeed(
                payload={"text": passage, "title": topic},
                source=Source(
                    DATASET, f"pydoc_data.topics[{topic!r}]#{index} (CPython {version})", LICENSE
                ),
                text_fields=("text",),
            )
