"""`vllm` backend: in-process `vllm.LLM`, the production path on a GPU.

vLLM's continuous batching only pays off when it sees the whole batch, so a batch is one
`LLM.generate` call with one `SamplingParams` per request (each with the request's seed).
Outputs are joined back to requests by vLLM's request id, never by position, and token
counts are the engine's own. Everything except building the `LLM` and that one call is
plain Python (the functions below), so it is tested on CPU without vLLM installed.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from synth_lib.engines.base import GenerationRequest, GenerationResult, ModelIdentity
from synth_lib.provenance.hashing import sha256_hex

PromptFormat = Literal["auto", "chat", "text", "token_ids"]
Prompt = dict[str, Any]
Encode = Callable[[str], list[int]]
ChatRender = Callable[[list[dict[str, str]]], str]


@dataclass(frozen=True)
class VllmConfig:
    """How to start the engine and how to turn requests into its prompts.

    `prompt_format`: `chat` applies the tokenizer's chat template, `text` sends the prompt
    as is, `auto` picks `chat` when the tokenizer has a template, and `token_ids` takes the
    prompt as a JSON list of token ids and answers with a JSON list of token ids (no
    tokenizer needed: pre-tokenized workloads and benchmarks with dummy weights).
    """

    model: str
    revision: str | None = None
    tokenizer: str | None = None
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    load_format: str = "auto"
    prompt_format: PromptFormat = "auto"
    skip_tokenizer_init: bool = False
    enforce_eager: bool = False
    ignore_eos: bool = False
    seed_per_request: bool = True
    seed: int = 0
    extra_engine_args: dict[str, Any] = field(default_factory=dict)


def llm_kwargs(config: VllmConfig) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)`."""
    kwargs: dict[str, Any] = {
        "model": config.model,
        "tokenizer": config.tokenizer,
        "dtype": config.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "enable_prefix_caching": config.enable_prefix_caching,
        "load_format": config.load_format,
        "skip_tokenizer_init": config.skip_tokenizer_init or config.prompt_format == "token_ids",
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
    }
    if config.revision and not Path(config.model).is_dir():
        kwargs["revision"] = config.revision
    return {**kwargs, **config.extra_engine_args}


def model_identity(config: VllmConfig) -> ModelIdentity:
    """Name and revision for provenance; dummy weights are labelled a smoke model."""
    path = Path(config.model)
    local = path.is_dir()
    name = path.name if local else config.model
    if config.load_format == "dummy":
        cfg = path / "config.json"
        digest = sha256_hex(cfg.read_bytes())[:12] if cfg.is_file() else "unknown"
        return ModelIdentity("vllm", name, f"dummy-weights:{digest}", is_smoke_model=True)
    if config.revision:
        return ModelIdentity("vllm", name, config.revision)
    if local:
        from synth_lib.engines.tiny_model import weights_digest

        return ModelIdentity("vllm", name, weights_digest(path))
    return ModelIdentity("vllm", name, "unpinned")


def sampling_kwargs(
    request: GenerationRequest,
    config: VllmConfig,
    structured: Callable[..., Any] = dict,
) -> dict[str, Any]:
    """Keyword arguments for the request's own `vllm.SamplingParams`.

    `choices` become vLLM structured outputs (`structured(choice=[...])`, i.e.
    `StructuredOutputsParams`), so the completion is exactly one of them."""
    sampling = request.sampling
    kwargs: dict[str, Any] = {
        "n": 1,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "stop": list(sampling.stop) or None,
        "seed": request.seed if config.seed_per_request else None,
        "ignore_eos": config.ignore_eos,
        "detokenize": config.prompt_format != "token_ids",
    }
    if sampling.choices:
        kwargs["structured_outputs"] = structured(choice=list(sampling.choices))
    return kwargs


def render_prompt(
    request: GenerationRequest,
    prompt_format: PromptFormat,
    encode: Encode | None,
    chat_render: ChatRender | None,
) -> Prompt:
    """The engine prompt for one request; raises ValueError when it cannot be built."""
    if prompt_format == "token_ids":
        if request.system:
            raise ValueError("prompt_format=token_ids cannot carry a system prompt")
        ids = json.loads(request.prompt)
        try:
            array("q", ids if isinstance(ids, list) else None)  # C-speed check: all ints
        except (TypeError, OverflowError) as exc:
            raise ValueError("prompt_format=token_ids needs a JSON list of integers") from exc
        return {"prompt_token_ids": ids}
    if prompt_format in ("chat", "auto") and chat_render is not None:
        messages = [{"role": "user", "content": request.prompt}]
        if request.system:
            messages.insert(0, {"role": "system", "content": request.system})
        text = chat_render(messages)
        return {"prompt_token_ids": encode(text)} if encode else {"prompt": text}
    if prompt_format == "chat":
        raise ValueError("prompt_format=chat but the tokenizer has no chat template")
    text = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
    return {"prompt_token_ids": encode(text)} if encode else {"prompt": text}


def request_index(request_id: str, first_id: int) -> int | None:
    """Position of a vLLM request id (a counter, maybe with a suffix) in the submitted batch."""
    match = re.match(r"\d+", str(request_id))
    return int(match.group()) - first_id if match else None


def to_result(
    request: GenerationRequest, output: Any, prompt_format: PromptFormat
) -> GenerationResult:
    """One `RequestOutput` as a result; `length` and `abort` carry an error text."""
    completion = output.outputs[0]
    token_ids = list(completion.token_ids)
    text = json.dumps(token_ids) if prompt_format == "token_ids" else completion.text
    result = GenerationResult(
        request_id=request.request_id,
        text=text,
        finish_reason="stop",
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(token_ids),
    )
    reason = completion.finish_reason
    if reason == "length":
        result.finish_reason = "length"
        result.error = f"Truncated: hit max_tokens={request.sampling.max_tokens} before finishing"
    elif reason != "stop":
        result.finish_reason = "error"
        result.error = f"EngineFinish: vLLM finish_reason={reason!r}"
    return result


def join_outputs(
    requests: Sequence[GenerationRequest],
    outputs: Sequence[Any],
    first_id: int | None,
    prompt_format: PromptFormat,
) -> list[GenerationResult]:
    """Results in request order, matched by request id; a request with no output is an error.

    `first_id` is the engine's request counter before the call; without it the smallest id
    returned is taken as the batch's first.
    """
    if first_id is None:
        ids = [request_index(o.request_id, 0) for o in outputs]
        first_id = min((i for i in ids if i is not None), default=0)
    by_index: dict[int, Any] = {}
    for output in outputs:
        index = request_index(output.request_id, first_id)
        if index is not None and 0 <= index < len(requests):
            by_index[index] = output
    results = []
    for index, request in enumerate(requests):
        output = by_index.get(index)
        if output is None:
            results.append(failed(request, "MissingOutput: the engine returned nothing for it"))
        else:
            results.append(to_result(request, output, prompt_format))
    return results


def failed(request: GenerationRequest, error: str) -> GenerationResult:
    return GenerationResult(request.request_id, "", "error", error=error)


class VllmEngine:
    """Batched generation with an in-process `vllm.LLM` (built here unless one is passed in)."""

    def __init__(
        self,
        config: VllmConfig,
        llm: Any | None = None,
        make_params: Callable[..., Any] | None = None,
        make_structured: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
        self.identity = model_identity(config)
        self.gpus = config.tensor_parallel_size
        if llm is None:
            from vllm import LLM

            llm = LLM(**llm_kwargs(config))
        if make_params is None:
            import vllm
            from vllm.sampling_params import StructuredOutputsParams

            make_params = vllm.SamplingParams
            make_structured = make_structured or StructuredOutputsParams
        self.llm = llm
        self._make_params = make_params
        self._make_structured = make_structured or dict
        self._encode, self._chat_render = self._tokenizer_functions()

    def _tokenizer_functions(self) -> tuple[Encode | None, ChatRender | None]:
        if self.config.prompt_format == "token_ids" or self.config.skip_tokenizer_init:
            return None, None
        tokenizer = self.llm.get_tokenizer()
        render: ChatRender | None = None
        if self.config.prompt_format != "text" and getattr(tokenizer, "chat_template", None):

            def render(messages: list[dict[str, str]]) -> str:
                return tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )

        def encode(text: str) -> list[int]:
            # a chat template already holds its special tokens; plain text gets the defaults
            return list(tokenizer.encode(text, add_special_tokens=render is None))

        return encode, render

    def _model_limits(self) -> tuple[int | None, int | None]:
        """(max prompt length, vocabulary size) when the engine exposes them."""
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        vocab = config.get_vocab_size() if hasattr(config, "get_vocab_size") else None
        return self.config.max_model_len or getattr(config, "max_model_len", None), vocab

    def _prepare(self, request: GenerationRequest, limit: int | None, vocab: int | None):
        """(prompt, params) for one request; ValueError when vLLM would reject it.

        vLLM validates while it adds a batch and aborts the whole batch on the first bad
        request, so what it would reject is caught here, one request at a time.
        """
        prompt = render_prompt(request, self.config.prompt_format, self._encode, self._chat_render)
        ids = prompt.get("prompt_token_ids")
        if ids is not None and limit and len(ids) >= limit:
            raise ValueError(f"prompt is {len(ids)} tokens, the model takes < {limit}")
        if ids and vocab and not 0 <= min(ids) <= max(ids) < vocab:
            raise ValueError(f"token id outside the vocabulary [0, {vocab})")
        try:
            kwargs = sampling_kwargs(request, self.config, self._make_structured)
            return prompt, self._make_params(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sampling parameters rejected: {exc}") from exc

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        submitted: list[int] = []
        prompts: list[Prompt] = []
        params: list[Any] = []
        limit, vocab = self._model_limits()
        for index, request in enumerate(requests):
            try:
                prompt, param = self._prepare(request, limit, vocab)
            except ValueError as exc:
                results[index] = failed(request, f"PromptError: {exc}")
                continue
            submitted.append(index)
            prompts.append(prompt)
            params.append(param)
        batch = [requests[i] for i in submitted]
        first_id = getattr(getattr(self.llm, "request_counter", None), "counter", None)
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
            joined = join_outputs(batch, outputs, first_id, self.config.prompt_format)
        except Exception as exc:  # an engine crash fails this batch, never the whole run
            joined = [failed(r, f"{type(exc).__name__}: {exc}") for r in batch]
        for index, result in zip(submitted, joined, strict=True):
            results[index] = result
        return [r for r in results if r is not None]
