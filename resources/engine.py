"""The generation engine as a Dagster resource: config and lifecycle only.

`engine_for(stage)` returns the shared backend wrapped in the response cache, with its
own stats, so each asset reports its own tokens, seconds and cache hits.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from synth_lib.engines.base import Engine
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.tiny_model import ensure_smoke_model


class GenerationEngine(dg.ConfigurableResource):
    """Which model answers, where, and where its responses are cached."""

    backend: str = Field(
        default="transformers", description="transformers | vllm | openai (SYNTH_ENGINE)."
    )
    model: str = Field(
        default="",
        description="Local weights directory or model name (SYNTH_MODEL). Empty: build and use "
        "the offline smoke model (random weights; its output is noise and labelled as such).",
    )
    revision: str = Field(default="", description="Model revision, when the backend needs one.")
    device: str = Field(default="cpu", description="Torch device for the transformers backend.")
    batch_size: int = Field(default=16, description="Requests per generate() batch (transformers).")
    torch_threads: int = Field(
        default=0, description="CPU threads for torch (0: torch's default; 1 for the smoke model)."
    )
    cache_dir: str = Field(description="Folder of the response cache.")
    models_dir: str = Field(description="Folder where the offline smoke model is built once.")
    chunk_size: int = Field(
        default=64, description="Requests per cache commit: at most this many are lost on a kill."
    )

    _engine: Engine | None = PrivateAttr(default=None)
    _cache: ResponseCache | None = PrivateAttr(default=None)

    def _build(self) -> Engine:
        if self.backend == "transformers":
            from synth_lib.engines.transformers_engine import TransformersEngine

            model_dir = self.model or ensure_smoke_model(self.models_dir)
            return TransformersEngine(
                model_dir,
                device=self.device,
                batch_size=self.batch_size,
                threads=self.torch_threads,
            )
        raise ValueError(f"unknown engine backend {self.backend!r} (SYNTH_ENGINE)")

    def engine_for(self, stage: str) -> CachedEngine:
        """The engine behind the response cache; stats start at zero for each stage."""
        if self._engine is None:
            self._engine = self._build()
        if self._cache is None:
            self._cache = ResponseCache(Path(self.cache_dir, "responses.sqlite"))
        return CachedEngine(self._engine, self._cache, chunk_size=self.chunk_size)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._cache is not None:
            self._cache.close()
