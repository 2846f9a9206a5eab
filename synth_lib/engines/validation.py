"""Every answer is validated here before it is cached or becomes a row, whatever the backend.

A server (or a quantized model, or a proxy) can answer with anything: text that is not a
string, text no UTF-8 encoder accepts, megabytes for a 128-token budget, an unknown
finish reason, token counts that are negative, enormous, `Infinity` or `"n/a"`. One such
answer must cost one row, never a stage, so:

- text that cannot be a row (not a string, a lone surrogate or a NUL, longer than
  `max_tokens` allows) turns the answer into a transient error with its reason. Broken
  text is rejected, not repaired: a repaired string is not what the model wrote;
- a finish reason outside `FinishReason` is an error;
- token counts that are not sane non-negative integers are replaced by an estimate and
  the repair is written into `notes` ("usage_estimated: ..."), so cost is never negative
  and a valid answer is never lost to its accounting;
- error texts and served-model names are made encodable, so a failure row always writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import get_args

from synth_lib.engines.base import FinishReason, GenerationRequest, GenerationResult

KNOWN_FINISH_REASONS = frozenset(get_args(FinishReason))
MAX_SERVED_MODEL_CHARS = 256
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class OutputLimits:
    """How much text and how many tokens an answer to `max_tokens` may plausibly hold.

    A token decodes to a few characters; 32 per token plus a fixed margin leaves room for
    any tokenizer while still refusing megabytes for a short budget.
    """

    chars_per_token: int = 32
    margin_chars: int = 1024
    completion_token_slack: float = 2.0
    prompt_token_margin: int = 8192

    def max_text_chars(self, max_tokens: int) -> int:
        return max(0, max_tokens) * self.chars_per_token + self.margin_chars

    def max_completion_tokens(self, max_tokens: int) -> int:
        return int(max(0, max_tokens) * self.completion_token_slack) + 16

    def max_prompt_tokens(self, request: GenerationRequest) -> int:
        return len(request.prompt) + len(request.system or "") + self.prompt_token_margin


DEFAULT_LIMITS = OutputLimits()


def encodable(text: str) -> str:
    """`text` with anything UTF-8 cannot encode (lone surrogates) written as escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_error(message: object) -> str:
    """An error text that always writes: a string, encodable, at most MAX_ERROR_CHARS."""
    return encodable(message if isinstance(message, str) else repr(message))[:MAX_ERROR_CHARS]


def text_problem(
    text: object, max_tokens: int, limits: OutputLimits = DEFAULT_LIMITS
) -> str | None:
    """Why `text` cannot be a row's text ("Class: detail"), or None when it can."""
    if not isinstance(text, str):
        return f"NonStringContent: content is {type(text).__name__}, not a string"
    cap = limits.max_text_chars(max_tokens)
    if len(text) > cap:
        return f"OversizedContent: {len(text)} chars, more than {cap} for max_tokens={max_tokens}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"InvalidUnicode: lone surrogate at char {exc.start} (rejected, not repaired)"
    if "\x00" in text:
        return f"InvalidUnicode: NUL at char {text.index(chr(0))} (rejected, not repaired)"
    return None


def sane_count(value: object, upper: int) -> int | None:
    """`value` as a token count if it is an integer in [0, upper] (7.0 counts), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= upper:
        return None
    return value


def estimate_token_count(text: str) -> int:
    """~4 characters per token: what a count is replaced by when the server's is not sane."""
    return math.ceil(len(text) / 4)


def checked_usage(
    request: GenerationRequest,
    text: str,
    prompt_tokens: object,
    completion_tokens: object,
    limits: OutputLimits = DEFAULT_LIMITS,
) -> tuple[int, int, list[str]]:
    """Sane (prompt, completion) token counts and a note for each one that was estimated."""
    notes: list[str] = []
    prompt = sane_count(prompt_tokens, limits.max_prompt_tokens(request))
    if prompt is None:
        prompt = estimate_token_count(request.prompt + (request.system or ""))
        notes.append(f"usage_estimated: prompt_tokens={safe_error(prompt_tokens)[:40]}")
    completion = sane_count(
        completion_tokens, limits.max_completion_tokens(request.sampling.max_tokens)
    )
    if completion is None:
        completion = estimate_token_count(text)
        notes.append(f"usage_estimated: completion_tokens={safe_error(completion_tokens)[:40]}")
    return prompt, completion, notes


def invalid(result: GenerationResult, reason: str) -> GenerationResult:
    """`result` turned into a transient error: never cached, re-sent by the next run."""
    return replace(
        result,
        text="",
        finish_reason="error",
        error=safe_error(reason),
        permanent=False,
        prompt_tokens=0,
        completion_tokens=0,
    )


def validate_result(
    request: GenerationRequest, result: GenerationResult, limits: OutputLimits = DEFAULT_LIMITS
) -> GenerationResult:
    """A result every stage and the cache can trust, or an error result saying why not."""
    served = result.served_model
    if served is not None:
        served = encodable(served)[:MAX_SERVED_MODEL_CHARS] if isinstance(served, str) else None
    notes = [safe_error(n) for n in result.notes] if isinstance(result.notes, list) else []
    result = replace(result, served_model=served, notes=notes)
    if result.finish_reason not in KNOWN_FINISH_REASONS:
        return invalid(
            result, f"UnexpectedFinish: finish_reason={safe_error(result.finish_reason)}"
        )
    if result.finish_reason == "error":
        return replace(
            result,
            text="",
            error=safe_error(result.error or "error"),
            prompt_tokens=sane_count(result.prompt_tokens, 2**62) or 0,
            completion_tokens=sane_count(result.completion_tokens, 2**62) or 0,
        )
    problem = text_problem(result.text, request.sampling.max_tokens, limits)
    if problem:
        return invalid(result, problem)
    prompt, completion, usage_notes = checked_usage(
        request, result.text, result.prompt_tokens, result.completion_tokens, limits
    )
    error = safe_error(result.error) if result.error is not None else None
    return replace(
        result,
        prompt_tokens=prompt,
        completion_tokens=completion,
        error=error,
        notes=notes + [n for n in usage_notes if n not in notes],
    )
