"""`transformers` backend: a local weights directory on CPU or GPU, batched `generate`.

Requests are grouped by sampling parameters and, within a group, sorted by prompt length
before they are cut into batches: left padding then costs little, and prompts of one
length tend to get answers of similar length, so a batch is not held open by one long
answer. Each sequence stops at its own end-of-turn token or at one of the request's stop
strings (checked while generating, so nothing is spent past them). A request with
`choices` is decoded through a token trie of them (`constraints.py`).

HF sampling draws from one RNG per batch, so each batch is seeded from its requests'
seeds; the response cache is what makes a request's answer stable across re-runs.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from synth_lib.engines.base import (
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
)
from synth_lib.engines.constraints import ChoiceLogitsProcessor, ChoiceTrie
from synth_lib.engines.default_model import default_model_info
from synth_lib.engines.tiny_model import SMOKE_MODEL_NAME, is_smoke_model_dir, weights_digest

# Waiting OpenMP threads sleep instead of spinning (only effective before torch is loaded;
# the Makefile exports it too): spinning threads on shared cores cost ~10x the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class TransformersEngine:
    """Batched generation with a local Hugging Face causal LM."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        batch_size: int = 16,
        dtype: str = "auto",
        threads: int = 0,
        logits_processors: Sequence[object] = (),
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
        # e.g. the green-list watermark (synth_lib.mix.watermark), applied to every request
        self.logits_processors = list(logits_processors)
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
        self._tries: dict[tuple[str, ...], ChoiceTrie] = {}
        smoke = is_smoke_model_dir(self.model_dir)
        if device == "cpu":
            # A tiny model is all per-op overhead: extra threads only spin against each other.
            # A real one gets one thread per core it may use (torch may count hyperthreads).
            torch.set_num_threads(threads or (1 if smoke else cpu_cores()))
        elif threads:
            torch.set_num_threads(threads)
        default = default_model_info(self.model_dir)
        if default is not None:
            name, revision, license_ = default.name, default.revision, default.license
        else:
            name = SMOKE_MODEL_NAME if smoke else self.model_dir.name
            revision, license_ = weights_digest(self.model_dir), ""
        self.identity = ModelIdentity(
            backend="transformers",
            model=name,
            revision=revision,
            is_smoke_model=smoke,
            license=license_,
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

    def batches(
        self, requests: Sequence[GenerationRequest]
    ) -> list[tuple[SamplingParams, list[int], list[list[int]]]]:
        """(sampling, request indices, token ids) per batch: same sampling, similar length."""
        groups: dict[SamplingParams, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            groups[request.sampling].append(index)
        planned = []
        for sampling, indices in groups.items():
            max_input = max(16, self.model.config.max_position_embeddings - sampling.max_tokens)
            ids = self.tokenizer(
                [self._render(requests[i]) for i in indices],
                add_special_tokens=False,
                truncation=True,
                max_length=max_input,
            )["input_ids"]
            order = sorted(range(len(indices)), key=lambda k: len(ids[k]))
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                planned.append((sampling, [indices[k] for k in chunk], [ids[k] for k in chunk]))
        return planned

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        for sampling, chunk, token_ids in self.batches(requests):
            batch = [requests[i] for i in chunk]
            try:
                answers = self._generate_batch(batch, token_ids, sampling)
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
        self,
        batch: Sequence[GenerationRequest],
        token_ids: Sequence[Sequence[int]],
        sampling: SamplingParams,
    ) -> list[GenerationResult]:
        import torch

        encoded = self.tokenizer.pad(
            {"input_ids": [list(t) for t in token_ids]}, padding=True, return_tensors="pt"
        ).to(self.device)
        torch.manual_seed(sum(r.seed * 1_000_003 + i for i, r in enumerate(batch)) % (2**31))
        do_sample = sampling.temperature > 0
        stops = {"stop_strings": list(sampling.stop), "tokenizer": self.tokenizer}
        processors, max_new = list(self.logits_processors), sampling.max_tokens
        if sampling.choices:
            trie = self._choice_trie(sampling.choices)
            processors.append(ChoiceLogitsProcessor(trie, encoded["input_ids"].shape[1]))
            max_new = min(max_new, trie.longest + 1)  # the choice and its end token
        with torch.inference_mode():
            output = self.model.generate(
                **encoded,
                max_new_tokens=max_new,
                do_sample=do_sample,
                temperature=sampling.temperature if do_sample else None,
                top_p=sampling.top_p if do_sample else None,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._stop_ids,
                logits_processor=processors or None,
                **(stops if sampling.stop else {}),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        return [
            self._result(request, tokens, int(prompt_len), sampling)
            for request, tokens, prompt_len in zip(batch, new_tokens, prompt_lengths, strict=True)
        ]

    def _choice_trie(self, choices: tuple[str, ...]) -> ChoiceTrie:
        """The token trie of `choices` (built once per choice set)."""
        trie = self._tries.get(choices)
        if trie is None:
            encode = functools.partial(self.tokenizer.encode, add_special_tokens=False)
            # end on a special token, which decoding drops: the text is the choice exactly
            special = set(self.tokenizer.all_special_ids)
            ends = [t for t in self._stop_ids if t in special] or self._stop_ids
            trie = self._tries[choices] = ChoiceTrie.from_choices(choices, encode, ends)
        return trie

    def _result(
        self,
        request: GenerationRequest,
        tokens: list[int],
        prompt_len: int,
        sampling: SamplingParams,
    ) -> GenerationResult:
        """Cut one row of the batch at its own end: end-of-turn token, stop string or budget."""
        ended = next((k for k, t in enumerate(tokens) if t in self._stop_ids), None)
        if ended is not None:
            tokens, finish = tokens[: ended + 1], "stop"
        else:
            tokens = [t for t in tokens if t != self.tokenizer.pad_token_id]
            finish = "length" if len(tokens) >= sampling.max_tokens else "stop"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = [text.index(s) for s in sampling.stop if s in text]
        if cut:
            text, finish = text[: min(cut)], "stop"
        return GenerationResult(
            request_id=request.request_id,
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_len,
            completion_tokens=len(tokens),
        )
