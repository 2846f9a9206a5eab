"""The dataset card: a Hugging Face `README.md` (YAML front matter + prose) for an export.

The front matter is what the Hub and `datasets.load_dataset(folder, config)` read:
licence, task categories, size category and one config per kind. The prose answers an
auditor: composition by stage and source, generator models with revisions, templates,
filters and thresholds, decontamination counts, licences and known limitations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import yaml

from synth_lib.mix.licences import most_restrictive
from synth_lib.provenance.schema import PROVENANCE_SCHEMA
from synth_lib.reporting import counts_table

# Licence ids the Hub's `license:` field accepts; others go in `license_name`.
HUB_LICENCES = {"mit", "apache-2.0", "cc0-1.0", "bsd-2-clause", "bsd-3-clause", "isc"}
HUB_LICENCES |= {"cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "gpl-3.0", "lgpl-3.0"}
HUB_LICENCES |= {"llama3", "llama3.1", "gemma", "unlicense", "unknown"}


def size_category(rows: int) -> str:
    for bound, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]:
        if rows < bound:
            return label
    return "100K<n<1M" if rows < 1_000_000 else "n>1M"


def _counts(frame: pl.DataFrame, expr: pl.Expr) -> dict[str, int]:
    if frame.is_empty():
        return {}
    counts = frame.select(expr.fill_null("—").alias("k")).group_by("k").len().sort("k")
    return {str(k): int(v) for k, v in counts.iter_rows()}


def card_facts(configs: Mapping[str, pl.DataFrame], curation: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the card states, computed from the exported rows + curation's metadata."""
    columns = {name: PROVENANCE_SCHEMA[name] for name in ("stage", "source", "generator")}
    columns["license"] = pl.Utf8()
    rows = pl.concat(
        [pl.DataFrame(schema=columns), *(f.select(list(columns)) for f in configs.values())]
    )
    generator = pl.col("generator").struct
    generated = rows.filter(pl.col("generator").is_not_null())
    model = pl.concat_str([generator.field("model"), generator.field("revision")], separator="@")
    template_hash = generator.field("template_hash").str.slice(0, 12)
    template = pl.concat_str([generator.field("template"), template_hash], separator="@")
    licences = _counts(rows, pl.col("license"))
    return {
        "total_rows": rows.height,
        "configs": {name: f.height for name, f in configs.items()},
        "by_stage": _counts(rows, pl.col("stage")),
        "by_source": _counts(
            rows.filter(pl.col("source").is_not_null()), pl.col("source").struct.field("dataset")
        ),
        "models": _counts(generated, model),
        "templates": _counts(generated, template),
        "licences": licences,
        "licence": most_restrictive(licences) if licences else "unknown",
        "smoke_model_rows": generated.filter(generator.field("is_smoke_model")).height,
        **curation,
    }


def front_matter(facts: Mapping[str, Any]) -> dict[str, Any]:
    licence = facts["licence"]
    meta: dict[str, Any] = {"license": licence if licence in HUB_LICENCES else "other"}
    if meta["license"] == "other":
        meta["license_name"] = licence
    meta |= {
        "task_categories": ["text-generation"],
        "language": ["en"],
        "size_categories": [size_category(facts["total_rows"])],
        "tags": ["synthetic", "provenance"],
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}]}
            for name in facts["configs"]
        ],
    }
    return meta


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}\n"


def render_card(facts: Mapping[str, Any], name: str = "synth mix") -> str:
    """README.md text: YAML front matter, then the sections an auditor reads."""
    yaml_text = yaml.safe_dump(front_matter(facts), sort_keys=False)
    limitations = [
        "Synthetic rows inherit the errors and biases of the generating models listed above.",
        "Row licences are the most restrictive of the row's root seeds and generating model "
        "(`license` column); check them against your use.",
    ]
    if facts["smoke_model_rows"]:
        limitations.insert(
            0,
            f"**{facts['smoke_model_rows']} rows come from the random-weight smoke model**: "
            "noise made for pipeline checks, not training data.",
        )
    removed = facts.get("removed_by_rollback", 0)
    parts = [
        f"---\n{yaml_text}---\n",
        f"# {name}\n\n{facts['total_rows']} rows made by synth: human seeds and synthetic "
        "rows, each with its provenance (`id`, `parent_ids`, `root_seed_ids`, `stage`, "
        "`source`, `generator`, `verdicts`) beside the trainer's columns.\n",
        _section("Configs", counts_table(facts["configs"], "config")),
        _section("Composition by stage", counts_table(facts["by_stage"], "stage")),
        _section("Human rows by source", counts_table(facts["by_source"], "source dataset")),
        _section("Generator models (name@revision)", counts_table(facts["models"], "model")),
        _section("Prompt templates (name@hash)", counts_table(facts["templates"], "template")),
        _section("Licences", counts_table(facts["licences"], "licence")),
        _section(
            "Filters and thresholds", f"```yaml\n{yaml.safe_dump(facts.get('filters', {}))}```"
        ),
        _section(
            "Decontamination (rows flagged per benchmark)",
            counts_table(facts.get("flagged_by_benchmark", {}), "benchmark"),
        ),
        _section("Rollbacks", f"{removed} rows removed by active rollbacks."),
        _section("Known limitations", "\n".join(f"- {item}" for item in limitations)),
        _section(
            "Loading",
            "```python\nfrom datasets import load_dataset\n"
            'ds = load_dataset("parquet", data_dir="text", split="train")\n```',
        ),
    ]
    return "\n".join(parts)
