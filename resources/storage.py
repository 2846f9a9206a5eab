"""Where this code location keeps its files: data, shards, caches and models."""

from pathlib import Path

import dagster as dg
from pydantic import Field


class SynthStorage(dg.ConfigurableResource):
    """Root folder for everything a run writes outside the Dagster instance."""

    home: str = Field(description="Root folder (local profile: .synth in the repository).")

    @property
    def data_dir(self) -> Path:
        return Path(self.home, "data")

    @property
    def cache_dir(self) -> Path:
        return Path(self.home, "cache")

    @property
    def models_dir(self) -> Path:
        return Path(self.home, "models")

    def stage_dir(self, name: str) -> Path:
        path = Path(self.home, "data", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
