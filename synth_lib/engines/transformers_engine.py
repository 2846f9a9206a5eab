"""`transformers` backend: a local weights directory on CPU or GPU, batched `generate`.

Requests are grouped by sampling parameters and generated in batches with left padding.
HF sampling draws from one RNG per batch, so each batch is seeded from its requests'
seeds; the response cache is what makes a request's answer stable across re-runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from synth_lib.engines.base import (
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
)
from synth_lib.engines.tiny_model import SMOKE_MODEL_NAME, is_smoke_model_dir, weights_digest


class TransformersEngine:
    """Batched generation with a local Hugging Face causal LM."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        batch_size: int = 16,
        dtype: str = "auto",
        threads: int = 0,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise FileNotFoundError(
                f"model directory {self.model_dir} does not exist (SYNTH_MODEL must be a local "
                "weights directory for the transformers engine; nothing is downloaded)"
            )
        self.device = device
        self.batch_size = batch_size
        torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch_dtype)
        self.model.to(device).eval()
        configured = self.model.generation_config.eos_token_id
        if configured is None:
            configured = self.tokenizer.eos_token_id
        self._stop_ids = list(configured) if isinstance(configured, list) else [configured]
        smoke = is_smoke_model_dir(self.model_dir)
        if threads or (smoke and device == "cpu"):
            # A tiny model is all per-op overhead: extra threads only spin against each other.
            torch.set_num_threads(threads or 1)
        self.identity = ModelIdentity(
            backend="transformers",
            model=SMOKE_MODEL_NAME if smoke else self.model_dir.name,
            revision=weights_digest(self.model_dir),
            is_smoke_model=smoke,
        )

    def _render(self, request: GenerationRequest) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": request.prompt}]
            if request.system:
                messages.insert(0, {"role": "system", "content": request.system})
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        return f"{request.system}\n\n{request.prompt}" if request.system else request.prompt

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        groups: dict[SamplingParams, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.sampling].append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for sampling, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = [requests[i] for i in chunk]
                try:
                    answers = self._generate_batch(batch, sampling)
                except Exception as exc:  # one bad batch must not lose the others
                    answers = [
                        GenerationResult(
                            r.request_id, "", "error", error=f"{type(exc).__name__}: {exc}"
                        )
                        for r in batch
                    ]
                for i, answer in zip(chunk, answers, strict=True):
                    results[i] = answer
        return [r for r in results if r is not None]

    def _generate_batch(
        self, batch: Sequence[GenerationRequest], sampling: SamplingParams
    ) -> list[GenerationResult]:
        import torch

        max_input = max(16, self.model.config.max_position_embeddings - sampling.max_tokens)
        encoded = self.tokenizer(
            [self._render(r) for r in batch],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_input,
        ).to(self.device)
        torch.manual_seed(sum(r.seed * 1_000_003 + i for i, r in enumerate(batch)) % (2**31))
        do_sample = sampling.temperature > 0
        with torch.no_grad():
            output = self.model.generate(
                **encoded,
                max_new_tokens=sampling.max_tokens,
                do_sample=do_sample,
                temperature=sampling.temperature if do_sample else None,
                top_p=sampling.top_p if do_sample else None,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._stop_ids,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        eos = self.tokenizer.eos_token_id
        results = []
        for request, tokens, prompt_len in zip(
            batch, new_tokens.tolist(), prompt_lengths, strict=True
        ):
            if eos in tokens:
                tokens = tokens[: tokens.index(eos)]
                finish = "stop"
            else:
                tokens = [t for t in tokens if t != self.tokenizer.pad_token_id]
                finish = "length" if len(tokens) >= sampling.max_tokens else "stop"
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            for stop in sampling.stop:
                if stop in text:
                    text, finish = text[: text.index(stop)], "stop"
            results.append(
                GenerationResult(
                    request_id=request.request_id,
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(prompt_len),
                    completion_tokens=len(tokens),
                )
            )
        return results
