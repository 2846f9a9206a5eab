"""A scripted engine for unit tests only: canned responses chosen by the prompt."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from synth_lib.engines.base import GenerationRequest, GenerationResult, ModelIdentity

Responder = Callable[[GenerationRequest], str | GenerationResult]


class ScriptedEngine:
    """Answers each request with `responder(request)`; records every request it saw."""

    def __init__(self, responder: Responder, model: str = "scripted") -> None:
        self.identity = ModelIdentity(backend="scripted", model=model, revision="test")
        self.responder = responder
        self.seen: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        out: list[GenerationResult] = []
        for req in requests:
            self.seen.append(req)
            answer = self.responder(req)
            if isinstance(answer, GenerationResult):
                answer.request_id = req.request_id
                out.append(answer)
            else:
                out.append(
                    GenerationResult(
                        request_id=req.request_id,
                        text=answer,
                        finish_reason="stop",
                        prompt_tokens=len(req.prompt.split()),
                        completion_tokens=len(answer.split()),
                    )
                )
        return out
