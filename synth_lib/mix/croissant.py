"""Croissant JSON-LD (MLCommons) for an export, built and validated with `mlcroissant`.

One FileSet and one RecordSet per config; the record sets name the scalar columns
(payload text, id, licence, stage, kind). Validation is `mlcroissant.Dataset` reading the
written file back, which also resolves the files the FileSets include.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCALAR_COLUMNS = {
    "text": ("text",),
    "messages": (),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
}
PROVENANCE_FIELDS = ("id", "license", "stage", "kind")
SPDX = "https://spdx.org/licenses/{}.html"


def croissant_jsonld(
    facts: Mapping[str, Any], name: str = "synth-mix", url: str = "https://example.invalid/synth"
) -> dict[str, Any]:
    """The Croissant metadata of an export whose configs and licences `facts` lists."""
    import mlcroissant as mlc

    distribution, record_sets = [], []
    for config in facts["configs"]:
        files = f"{config}-files"
        distribution.append(
            mlc.FileSet(
                id=files,
                name=files,
                encoding_formats=["application/x-parquet"],
                includes=f"{config}/*.parquet",
            )
        )
        fields = [
            mlc.Field(
                id=f"{config}/{column}",
                name=column,
                data_types=[mlc.DataType.TEXT],
                source=mlc.Source(file_set=files, extract=mlc.Extract(column=column)),
            )
            for column in (*SCALAR_COLUMNS[config], *PROVENANCE_FIELDS)
        ]
        record_sets.append(mlc.RecordSet(id=config, name=config, fields=fields))
    metadata = mlc.Metadata(
        name=name,
        description=f"{facts['total_rows']} rows of synthetic and human training data with "
        "per-row provenance, one record set per trainer format.",
        url=url,
        cite_as=f"synth export {name}",
        date_published=datetime.now(UTC),
        license=[SPDX.format(licence) for licence in facts["licences"]] or ["unknown"],
        version="1.0.0",
        distribution=distribution,
        record_sets=record_sets,
    )
    return json.loads(json.dumps(metadata.to_json(), default=str))


def validate(path: str | Path) -> list[str]:
    """Errors `mlcroissant` finds in the written file (empty: valid), and a read of each set."""
    import mlcroissant as mlc

    try:
        dataset = mlc.Dataset(jsonld=str(path))
        for record_set in dataset.metadata.record_sets:
            next(iter(dataset.records(record_set.id)), None)
    except Exception as exc:  # mlcroissant raises ValidationError and friends
        return [f"{path}: {exc}"]
    return []
