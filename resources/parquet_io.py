"""Polars DataFrames as Parquet files, one per asset (and partition), written atomically."""

import os
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores each asset at `<base_dir>/<asset key path>[/<partition>].parquet`.

    Writes go to a temporary file in the same folder and are renamed into place, so a
    worker killed mid-write never leaves a half-written file at the final path.
    """

    base_dir: str = Field(description="Folder that holds one Parquet file per asset.")

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        key_path = Path(self.base_dir, *context.asset_key.path)
        if context.has_asset_partitions:
            return key_path / f"{context.asset_partition_key}.parquet"
        return key_path.with_suffix(".parquet")

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        obj.write_parquet(staging, statistics=True)
        os.replace(staging, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: upstream asset {context.asset_key.to_user_string()} has not been "
                "materialized yet"
            )
        return pl.read_parquet(path)
