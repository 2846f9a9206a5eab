"""`openai` backend: any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI, APIs).

A fleet of servers fails in small ways all the time, so every request is retried on 429,
5xx, 408/409, connection errors, timeouts and invalid answers, with exponential backoff,
jitter and `Retry-After` honoured (capped). Other 4xx are permanent: not retried, and
cached as failures so a re-run does not send them again (401/403/404/407 excepted: those
are about the key or the endpoint, so fixing the configuration must be enough).

Nothing the server sends is trusted: the body is read as a stream with a byte cap derived
from `max_tokens` (compressed and decompressed), each attempt has a total deadline
(a body trickling a byte a second included), each request a budget over all its attempts
and backoffs, and the batch gives up on the requests it has not sent once the server has
not completed a single response for `stall_budget_s`. Every answer is checked by
`validation.validate_result` (text, finish reason, token counts) and the model it names
against the configured one (`served_model_policy`). A request that still fails comes
back as a result with `finish_reason="error"`; `length` and `content_filter` come back
as results with that reason and an error text, never as usable rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from synth_lib.engines.base import GenerationRequest, GenerationResult, ModelIdentity
from synth_lib.engines.http_body import (
    ACCEPT_ENCODING,
    BodyEncodingError,
    BodyTooLarge,
    read_capped,
)
from synth_lib.engines.validation import checked_usage, encodable, text_problem

RETRYABLE_STATUS = frozenset({408, 409}) | frozenset(range(500, 600))
# 4xx that say the key, the account or the endpoint is wrong, not the request: a re-run
# with a fixed configuration must send them again, so they are not cached.
CONFIGURATION_STATUS = frozenset({401, 402, 403, 404, 407})
ERROR_BODY_BYTES = 2048
CHOICE_PARAMS = ("", "structured_outputs", "guided_choice")
FINISH_REASONS = {
    "stop": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
}
# "gpt-4o-mini" is served as "gpt-4o-mini-2024-07-18": a dated snapshot of the same name
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


@dataclass(frozen=True)
class OpenAIConfig:
    """Endpoint, model and the limits a run must respect. The key comes from `dg.EnvVar`."""

    base_url: str
    model: str
    api_key: str | None = None
    revision: str = "api"
    max_concurrency: int = 16
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    request_timeout_s: float = 60.0
    request_budget_s: float = 120.0
    stall_budget_s: float = 120.0
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_tokens_field: str = "max_tokens"
    extra_body: dict[str, Any] = field(default_factory=dict)
    body_base_bytes: int = 64 * 1024
    body_bytes_per_token: int = 1024
    # An answer naming another model than `model` (not an alias, not a dated snapshot):
    # "reject" makes it a retryable failure, so no row can claim the wrong model; "accept"
    # keeps it with `served_model` recorded on the result, in the cache, in failure rows
    # and in the stage's `served_models` metadata (row `generator` records still name the
    # configured model: use it only for a gateway whose aliases you cannot list).
    served_model_policy: Literal["reject", "accept"] = "reject"
    served_model_aliases: tuple[str, ...] = ()
    # How the server takes a request's `choices`: "" sends nothing (the reply is free text,
    # parsed as usual), "structured_outputs" is vLLM >= 0.12, "guided_choice" older vLLM.
    choice_param: Literal["", "structured_outputs", "guided_choice"] = ""

    def __post_init__(self) -> None:
        if self.served_model_policy not in ("reject", "accept"):
            raise ValueError(
                f"served_model_policy {self.served_model_policy!r}: choose 'reject' or 'accept'"
            )
        if self.choice_param not in CHOICE_PARAMS:
            raise ValueError(f"choice_param {self.choice_param!r}: choose one of {CHOICE_PARAMS}")

    def body_cap(self, max_tokens: int) -> int:
        """Bytes a response to `max_tokens` may hold (room for JSON escapes and logprobs)."""
        return self.body_base_bytes + max(0, max_tokens) * self.body_bytes_per_token


class RetryableError(Exception):
    """An attempt failed in a way a later attempt may not; the class name is the failure class."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """HTTP 429."""


class ServerError(RetryableError):
    """HTTP 5xx, 408 or 409."""


class InvalidResponse(RetryableError):
    """A 200 whose body is not JSON, not a chat completion or not a valid answer."""


class OversizedResponse(InvalidResponse):
    """A body over the cap for its `max_tokens`, on the wire or decompressed."""


class ModelMismatch(InvalidResponse):
    """The answer names another model than the configured one (served_model_policy=reject)."""


class Stalled(Exception):
    """The server completed no response for `stall_budget_s`: the rest of the batch waits
    for the next run instead of holding this one."""


class ClientError(Exception):
    """HTTP 4xx other than 408/409/429: retrying the same request cannot fix it."""

    def __init__(self, message: str, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class TokenBucket:
    """Async token bucket: `rate_per_minute` sustained, `burst_s` seconds' worth at once.

    A cost larger than the bucket waits for a full bucket and leaves it in debt, so the
    long-run rate holds even for requests bigger than the burst.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate_per_s = rate_per_minute / 60.0
        self.capacity = max(1.0, self.rate_per_s * burst_s)
        self.tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, cost: float = 1.0) -> None:
        async with self._lock:
            need = min(cost, self.capacity)
            while True:
                now = self._clock()
                elapsed, self._updated = now - self._updated, now
                self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
                if self.tokens >= need - 1e-9:  # float refills may land a hair short
                    self.tokens -= cost
                    return
                await self._sleep(max(1e-3, (need - self.tokens) / self.rate_per_s))


def estimate_tokens(request: GenerationRequest) -> int:
    """What a request may consume against a tokens-per-minute limit (~4 chars per token)."""
    chars = len(request.prompt) + len(request.system or "")
    return math.ceil(chars / 4) + request.sampling.max_tokens


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, base * 2**(attempt-1))]."""
    return rng.uniform(0.0, min(max_s, base_s * 2 ** (attempt - 1)))


def build_body(config: OpenAIConfig, request: GenerationRequest) -> dict[str, Any]:
    """The chat-completions request body; the sampling seed travels as `seed`, and
    `choices` as the server's constrained-choice parameter where it has one."""
    messages = [{"role": "user", "content": request.prompt}]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    body: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        config.max_tokens_field: request.sampling.max_tokens,
        "seed": request.seed,
        "n": 1,
    }
    if request.sampling.stop:
        body["stop"] = list(request.sampling.stop)
    choices = list(request.sampling.choices)
    if choices and config.choice_param == "structured_outputs":
        body["structured_outputs"] = {"choice": choices}
    elif choices and config.choice_param == "guided_choice":
        body["guided_choice"] = choices
    return {**body, **config.extra_body}


def served_model_matches(configured: str, served: str, aliases: Sequence[str] = ()) -> bool:
    """The same name, an alias, or a dated snapshot of it (`name-2024-07-18`)."""
    if served == configured or served in aliases:
        return True
    return served.startswith(configured) and bool(
        _SNAPSHOT_SUFFIX.fullmatch(served[len(configured) :])
    )


def parse_completion(
    request: GenerationRequest, payload: Any, config: OpenAIConfig | None = None
) -> GenerationResult:
    """Turn a 200 body into a checked result; raises InvalidResponse for anything else.

    The body must be a chat completion whose content is valid text within what
    `max_tokens` allows and whose finish reason is known; token counts that are not
    sane are estimated (and noted), and the model the server names is recorded.
    """
    max_tokens = request.sampling.max_tokens
    try:
        choice = payload["choices"][0]
        message = choice.get("message") or {}
        reason = choice.get("finish_reason")
        text = message.get("content")
        refusal = message.get("refusal")
        usage = payload.get("usage") or {}
        served = payload.get("model")
        usage_get = usage.get
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise InvalidResponse(f"not a chat completion: {exc!r}") from exc
    served_model = encodable(served)[:256] if isinstance(served, str) and served else None
    if config is not None and served_model is not None:
        same = served_model_matches(config.model, served_model, config.served_model_aliases)
        if not same and config.served_model_policy == "reject":
            raise ModelMismatch(f"served by {served_model!r}, configured {config.model!r}")
    if refusal or reason == "content_filter":
        return GenerationResult(
            request_id=request.request_id,
            text="",
            finish_reason="content_filter",
            error=f"ContentFilter: {encodable(str(refusal or 'output withheld by the filter'))}",
            served_model=served_model,
        )
    if text is None:
        raise InvalidResponse(f"no content (finish_reason={encodable(repr(reason))[:40]})")
    problem = text_problem(text, max_tokens)
    if problem:
        raise InvalidResponse(problem)
    finish = FINISH_REASONS.get(reason) if isinstance(reason, str) else None
    if finish is None:
        raise InvalidResponse(f"UnexpectedFinish: finish_reason={encodable(repr(reason))[:40]}")
    prompt_tokens, completion_tokens, notes = checked_usage(
        request, text, usage_get("prompt_tokens"), usage_get("completion_tokens")
    )
    result = GenerationResult(
        request_id=request.request_id,
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        served_model=served_model,
        notes=notes,
    )
    if finish == "length":
        result.error = f"Truncated: hit max_tokens={max_tokens} before finishing"
    return result


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        head = body[:80].decode("utf-8", "replace")
        raise InvalidResponse(f"body is not JSON ({type(exc).__name__}): {head!r}") from exc


class _BatchClock:
    """When the server last completed a response: a batch stops sending once it stalls."""

    def __init__(self) -> None:
        self.last_response = time.monotonic()

    def responded(self) -> None:
        self.last_response = time.monotonic()

    def idle_s(self) -> float:
        return time.monotonic() - self.last_response


class OpenAIEngine:
    """Batched generation over an OpenAI-compatible HTTP endpoint."""

    def __init__(self, config: OpenAIConfig, seed: int | None = None) -> None:
        self.config = config
        self.identity = ModelIdentity(
            backend="openai", model=config.model, revision=config.revision
        )
        self._rng = random.Random(seed)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run the whole batch on an event loop of its own; results in request order."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests)).result()

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        cfg = self.config
        timeout = httpx.Timeout(
            connect=cfg.connect_timeout_s,
            read=cfg.read_timeout_s,
            write=cfg.read_timeout_s,
            pool=None,
        )
        limits = httpx.Limits(
            max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency
        )
        headers = {"Accept-Encoding": ACCEPT_ENCODING}
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
        semaphore = asyncio.Semaphore(cfg.max_concurrency)
        rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        clock = _BatchClock()
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:

            async def attempt(
                request: GenerationRequest, deadline: list[float]
            ) -> GenerationResult:
                if rpm:
                    await rpm.acquire(1)
                if tpm:
                    await tpm.acquire(estimate_tokens(request))
                async with semaphore:
                    if clock.idle_s() > cfg.stall_budget_s:
                        raise Stalled(
                            f"the server completed no response in {cfg.stall_budget_s:g} s; "
                            "not sent, the next run will"
                        )
                    now = time.monotonic()
                    if not deadline:  # the request's budget starts with its first attempt
                        deadline.append(now + cfg.request_budget_s)
                    limit = min(cfg.request_timeout_s, deadline[0] - now)
                    async with asyncio.timeout(max(limit, 0.0)):
                        return await self._post(client, url, request, clock)

            return list(await asyncio.gather(*(self._with_retries(attempt, r) for r in requests)))

    async def _post(
        self,
        client: httpx.AsyncClient,
        url: str,
        request: GenerationRequest,
        clock: _BatchClock,
    ) -> GenerationResult:
        body_cap = self.config.body_cap(request.sampling.max_tokens)
        async with client.stream("POST", url, json=build_body(self.config, request)) as response:
            status = response.status_code
            try:
                if status >= 300:
                    head = await read_capped(response, ERROR_BODY_BYTES, truncate=True)
                else:
                    body = await read_capped(response, body_cap)
            except BodyTooLarge as exc:
                raise OversizedResponse(
                    f"{exc} (max_tokens={request.sampling.max_tokens})"
                ) from exc
            except BodyEncodingError as exc:
                raise InvalidResponse(str(exc)) from exc
        clock.responded()
        if status >= 300:
            detail = f"HTTP {status}: {encodable(head.decode('utf-8', 'replace'))[:200]}"
            if status == 429:
                raise RateLimited(detail, parse_retry_after(response.headers))
            if status in RETRYABLE_STATUS:
                raise ServerError(detail, parse_retry_after(response.headers))
            if status < 400:
                raise InvalidResponse(f"unexpected {detail}")
            raise ClientError(detail, permanent=status not in CONFIGURATION_STATUS)
        return parse_completion(request, _decode_json(body), self.config)

    async def _with_retries(
        self,
        attempt: Callable[[GenerationRequest, list[float]], Awaitable[GenerationResult]],
        request: GenerationRequest,
    ) -> GenerationResult:
        cfg = self.config
        deadline: list[float] = []  # set when the first attempt starts
        for number in range(1, cfg.max_attempts + 1):
            wait: float | None = None
            try:
                result = await attempt(request, deadline)
                result.attempts = number
                return result
            except RetryableError as exc:
                error, wait = exc, exc.retry_after
            except (httpx.RequestError, TimeoutError) as exc:
                error = exc
            except Exception as exc:  # ClientError, Stalled, anything unforeseen: no retry
                return self._failed(request, exc, number)
            if number == cfg.max_attempts:
                return self._failed(request, error, number)
            delay = backoff_delay(number, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
            delay = min(cfg.max_retry_after_s, wait) if wait is not None else delay
            left = deadline[0] - time.monotonic() if deadline else math.inf
            if delay >= left:
                budget = f"request budget of {cfg.request_budget_s:g} s spent"
                return self._failed(request, error, number, budget)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    @staticmethod
    def _failed(
        request: GenerationRequest, exc: BaseException, attempts: int, note: str = ""
    ) -> GenerationResult:
        timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
        message = str(exc) or ("no response within the time limit" if timed_out else repr(exc))
        if note:
            message = f"{message} ({note} after {attempts} attempts)"
        return GenerationResult(
            request_id=request.request_id,
            text="",
            finish_reason="error",
            error=encodable(f"{type(exc).__name__}: {message}"),
            attempts=attempts,
            permanent=isinstance(exc, ClientError) and exc.permanent,
        )
