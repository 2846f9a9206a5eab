"""One batched interface over every generation backend (transformers, vllm, openai).

Stages build `GenerationRequest`s, hand the whole batch to an engine and get one
`GenerationResult` per request back, in request order. Backends never raise for a
single bad request: a failed request is a result with `finish_reason="error"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from synth_lib.provenance.hashing import canonical_json, sha256_hex

FinishReason = Literal["stop", "length", "content_filter", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; part of the cache key and of every generated row's provenance.

    `choices`, when given, constrains the completion to be exactly one of these strings
    (verdicts: a small judge rarely keeps to the asked format on its own). It is left out
    of the serialised form while empty, so keys made before it existed stay valid.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not c for c in self.choices) or len(set(self.choices)) != len(self.choices):
            raise ValueError(f"choices must be distinct non-empty strings, got {self.choices!r}")

    def as_dict(self) -> dict[str, Any]:
        """The fields that identify these settings (`choices` only when set)."""
        out = asdict(self)
        if not self.choices:
            del out["choices"]
        return out

    def to_json(self) -> str:
        return canonical_json(self.as_dict())


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to generate for. `request_id` joins the result back to its row."""

    request_id: str
    prompt: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    system: str | None = None


@dataclass
class GenerationResult:
    """The outcome of one request. Only `finish_reason == "stop"` is usable text.

    `served_model` is the model the server says answered (None when it does not say);
    `notes` record what validation repaired, e.g. token counts it could not trust.
    """

    request_id: str
    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    permanent: bool = False
    served_model: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finish_reason == "stop"

    @property
    def retryable(self) -> bool:
        """An error a later run may not repeat: never cached, so the next run re-sends it.

        `permanent` errors (the server refused this exact request, e.g. HTTP 400) are cached
        like answers, so a re-run does not send them again unless the request changes.
        """
        return self.finish_reason == "error" and not self.permanent


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: goes into the cache key and into `generator` provenance."""

    backend: str
    model: str
    revision: str
    is_smoke_model: bool = False
    license: str = ""  # the weights' licence, where the backend knows it


@runtime_checkable
class Engine(Protocol):
    """A backend: takes a whole batch, returns one result per request in the same order."""

    identity: ModelIdentity

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...


def cache_key(identity: ModelIdentity, request: GenerationRequest) -> str:
    """Content address of a response: backend, model + revision, prompt, sampling, seed."""
    return sha256_hex(
        canonical_json(
            {
                "backend": identity.backend,
                "model": identity.model,
                "revision": identity.revision,
                "system": request.system,
                "prompt": request.prompt,
                "sampling": request.sampling.as_dict(),
                "seed": request.seed,
            }
        )
    )
