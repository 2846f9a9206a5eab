"""Audit assets: the `rollbacks` ledger as a table, and the export trainers and auditors read.

`rollbacks` shows the ledger `synth rollback` appends to; the mix, curation and the
export read the ledger itself on every run (they depend on this asset so the graph says
so), which keeps a rollback in force even where this view was not re-materialized.
`dataset_export` writes the curated mix as one folder per TRL format with its dataset card,
Croissant metadata and manifest; every row carries its most restrictive licence.
"""

import json

import dagster as dg
import polars as pl
from pydantic import Field

from resources.storage import SynthStorage
from synth_assets.common import frame_output
from synth_lib.mix.card import card_facts, render_card
from synth_lib.mix.croissant import croissant_jsonld, validate
from synth_lib.mix.export import MANIFEST_NAME, split_by_config, write_export
from synth_lib.mix.licences import row_licence, seed_licences
from synth_lib.provenance.ancestry import parquet_files
from synth_lib.provenance.hashing import sha256_hex
from synth_lib.provenance.rollback import (
    active_entries,
    drop_rolled_back,
    load_entries,
    removed_by,
)
from synth_lib.reporting import markdown_table

EXPORT_DIR = "export"
SEED_ASSETS = ["text_seeds", "code_seeds", "math_seeds", "reasoning_tasks"]
PERMISSIVE = ["cc0-1.0", "unlicense", "mit", "bsd-2-clause", "bsd-3-clause", "isc", "psf-2.0"]


@dg.asset(group_name="audit", kinds={"polars"}, code_version="rollbacks-1")
def rollbacks(storage: SynthStorage) -> dg.MaterializeResult:
    """Every rollback recorded by `synth rollback`, active or lifted (what, why, when, who)."""
    entries = [entry.summary() for entry in load_entries(storage.home)]
    frame = pl.DataFrame(
        [{**e, "affected": json.dumps(e["affected"], sort_keys=True)} for e in entries],
        schema={
            "id": pl.Utf8,
            "target": pl.Utf8,
            "reason": pl.Utf8,
            "user": pl.Utf8,
            "created_at": pl.Utf8,
            "affected": pl.Utf8,
            "lifted_at": pl.Utf8,
            "lifted_by": pl.Utf8,
            "lift_reason": pl.Utf8,
            "removed_rows": pl.Int64,
            "active": pl.Boolean,
        },
    )
    shown = ["id", "target", "reason", "user", "created_at", "removed_rows", "active"]
    extra = {
        "active": int(frame.get_column("active").sum()) if frame.height else 0,
        "lifted": int((~frame.get_column("active")).sum()) if frame.height else 0,
        "entries": dg.MetadataValue.md(markdown_table(frame.select(shown).to_dicts())),
    }
    result = frame_output(frame, shown, extra)
    # An empty ledger still has a version: the view must not look stale forever.
    return dg.MaterializeResult(
        value=frame,
        metadata=result.metadata,
        data_version=dg.DataVersion(f"rollbacks-{len(entries)}-{extra['lifted']}"),
    )


class ExportConfig(dg.Config):
    """Where the export goes and which row licences the mix may contain."""

    licence_allow_list: list[str] = Field(
        default=[*PERMISSIVE, "apache-2.0", "cc-by-4.0"],
        description="Licences (lower-case SPDX ids) a row may carry; the blocking check on "
        "the export names every row outside it.",
    )
    name: str = Field(default="synth-mix", description="Dataset name in the card and Croissant.")


def _curation_facts(context: dg.AssetExecutionContext) -> dict:
    """Filters, thresholds and decontamination counts the curated mix recorded."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("decontaminated_mix"))
    meta = event.asset_materialization.metadata if event else {}

    def value(key: str) -> dict:
        return dict(meta[key].value) if key in meta else {}

    return {
        "filters": {"curation": value("check_spec"), "dedup": value("dedup")},
        "flagged_by_benchmark": value("flagged_by_benchmark"),
    }


@dg.asset(
    group_name="audit",
    kinds={"parquet"},
    code_version="export-1",
    deps=[rollbacks, *SEED_ASSETS],
)
def dataset_export(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    storage: SynthStorage,
    decontaminated_mix: pl.DataFrame,
) -> dg.MaterializeResult:
    """The curated mix per TRL format (text, messages, prompt/completion, DPO) + its card."""
    mix, removed = drop_rolled_back(
        decontaminated_mix, removed_by(active_entries(storage.home), [decontaminated_mix])
    )
    licences = seed_licences(parquet_files(storage.data_dir))
    with_licence = mix.with_columns(
        license=pl.struct("root_seed_ids", "generator").map_elements(
            lambda row: row_licence(
                row["root_seed_ids"], (row["generator"] or {}).get("model"), licences
            ),
            return_dtype=pl.Utf8,
        )
        if mix.height
        else pl.lit(None, pl.Utf8)
    )
    configs = split_by_config(with_licence)
    facts = card_facts(configs, {**_curation_facts(context), "removed_by_rollback": removed.height})
    target = storage.stage_dir(EXPORT_DIR)
    manifest = write_export(
        configs, target, render_card(facts, config.name), croissant_jsonld(facts, config.name)
    )
    errors = validate(target / "croissant.json")
    if errors:
        context.log.warning(f"Croissant validation: {errors}")
    schema = {"path": pl.Utf8, "config": pl.Utf8, "rows": pl.Int64, "sha256": pl.Utf8}
    summary = pl.DataFrame(manifest["files"], schema=schema)
    extra = {
        "export_dir": dg.MetadataValue.path(str(target)),
        "rows_by_config": dg.MetadataValue.json(facts["configs"]),
        "licences": dg.MetadataValue.json(facts["licences"]),
        "licence_allow_list": dg.MetadataValue.json(config.licence_allow_list),
        "dataset_licence": facts["licence"],
        "removed_by_rollback": removed.height,
        "croissant_errors": len(errors),
        "card": dg.MetadataValue.md((target / "README.md").read_text()),
    }
    return frame_output(summary, ["config", "path", "rows"], extra)


def _export_rows(storage: SynthStorage) -> pl.DataFrame:
    files = sorted(storage.stage_dir(EXPORT_DIR).glob("*/*.parquet"))
    if not files:
        return pl.DataFrame(schema={"id": pl.Utf8, "license": pl.Utf8})
    return pl.concat([pl.read_parquet(f, columns=["id", "license"]) for f in files])


@dg.asset_check(
    asset=dataset_export, blocking=True, description="Every row's licence is on the allow-list."
)
def dataset_export_licences_allowed(
    context: dg.AssetCheckExecutionContext, storage: SynthStorage
) -> dg.AssetCheckResult:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("dataset_export"))
    recorded = event.asset_materialization.metadata.get("licence_allow_list") if event else None
    allowed = list(recorded.value) if recorded is not None else ExportConfig().licence_allow_list
    rows = _export_rows(storage)
    offending = rows.filter(~pl.col("license").is_in(allowed))
    by_licence = {str(k): int(v) for k, v in offending.group_by("license").len().iter_rows()}
    return dg.AssetCheckResult(
        passed=offending.is_empty(),
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{offending.height} rows carry a licence outside the allow-list"
        if offending.height
        else f"all {rows.height} rows carry an allowed licence",
        metadata={
            "offending_rows": offending.height,
            "by_licence": dg.MetadataValue.json(by_licence),
            "offending_ids": dg.MetadataValue.json(offending.get_column("id").head(20).to_list()),
        },
    )


@dg.asset_check(asset=dataset_export, description="Export files match their sha256 manifest.")
def dataset_export_manifest_verified(storage: SynthStorage) -> dg.AssetCheckResult:
    target = storage.stage_dir(EXPORT_DIR)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    bad = [
        f["path"]
        for f in manifest["files"]
        if not (target / f["path"]).is_file()
        or sha256_hex((target / f["path"]).read_bytes()) != f["sha256"]
    ]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(bad)} files differ from the manifest" if bad else "manifest verified",
        metadata={"files": len(manifest["files"]), "mismatched": dg.MetadataValue.json(bad)},
    )


@dg.asset_check(asset=dataset_export, description="Share of rows generated with the watermark.")
def dataset_export_watermarked_share(storage: SynthStorage) -> dg.AssetCheckResult:
    """From provenance: a watermarked run's revision ends in `+wm.<key id>` (never the key)."""
    files = sorted(storage.stage_dir(EXPORT_DIR).glob("*/*.parquet"))
    frames = [pl.read_parquet(f, columns=["generator"]) for f in files]
    rows = pl.concat(frames) if frames else pl.DataFrame(schema={"generator": pl.Struct({})})
    generated = rows.filter(pl.col("generator").is_not_null())
    key_ids = (
        generated.select(
            pl.col("generator").struct.field("revision").str.extract(r"\+wm\.([0-9a-f]+)$")
        )
        .to_series()
        .drop_nulls()
        if generated.height
        else pl.Series([], dtype=pl.Utf8)
    )
    share = key_ids.len() / generated.height if generated.height else 0.0
    return dg.AssetCheckResult(
        passed=True,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{key_ids.len()} of {generated.height} generated rows are watermarked",
        metadata={
            "watermarked_share": round(share, 4),
            "watermarked_rows": key_ids.len(),
            "key_ids": dg.MetadataValue.json(sorted(set(key_ids.to_list()))),
        },
    )
