"""`openai` backend: any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI, APIs).

A fleet of servers fails in small ways all the time, so every request is retried on 429,
5xx, connection errors, timeouts and malformed bodies, with exponential backoff, jitter and
`Retry-After` honoured; each attempt has a hard deadline so a stalled socket cannot hang a
run. A request that still fails comes back as a result with `finish_reason="error"` (the
cache never stores those, so a re-run retries exactly them); `length` and `content_filter`
come back as results with that reason and an error text, never as usable rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from synth_lib.engines.base import GenerationRequest, GenerationResult, ModelIdentity

RETRYABLE_STATUS = frozenset({408, 409}) | frozenset(range(500, 600))


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
    read_timeout_s: float = 120.0
    request_timeout_s: float = 300.0
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_tokens_field: str = "max_tokens"
    extra_body: dict[str, Any] = field(default_factory=dict)


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
    """A 200 whose body is not JSON or not a chat completion."""


class ClientError(Exception):
    """HTTP 4xx other than 408/409/429: retrying the same request cannot fix it."""


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
    """The chat-completions request body; the sampling seed travels as `seed`."""
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
    return {**body, **config.extra_body}


def parse_completion(request_id: str, payload: Any, max_tokens: int) -> GenerationResult:
    """Turn a 200 body into a result; raises RetryableError when the body is not a completion."""
    try:
        choice = payload["choices"][0]
        message = choice.get("message") or {}
        reason = choice.get("finish_reason")
        text = message.get("content")
        refusal = message.get("refusal")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise InvalidResponse(f"not a chat completion: {exc!r}") from exc
    usage = payload.get("usage") or {}
    result = GenerationResult(
        request_id=request_id,
        text=text or "",
        finish_reason="stop",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )
    if refusal or reason == "content_filter":
        result.finish_reason = "content_filter"
        result.error = f"ContentFilter: {refusal or 'output withheld by the content filter'}"
    elif reason == "length":
        result.finish_reason = "length"
        result.error = f"Truncated: hit max_tokens={max_tokens} before finishing"
    elif reason not in ("stop", "eos", None) or text is None:
        result.finish_reason = "error"
        result.error = f"UnexpectedFinish: finish_reason={reason!r}, content={text!r:.80}"
    return result


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
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        semaphore = asyncio.Semaphore(cfg.max_concurrency)
        rpm = TokenBucket(cfg.requests_per_minute) if cfg.requests_per_minute else None
        tpm = TokenBucket(cfg.tokens_per_minute) if cfg.tokens_per_minute else None
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:

            async def attempt(request: GenerationRequest) -> GenerationResult:
                if rpm:
                    await rpm.acquire(1)
                if tpm:
                    await tpm.acquire(estimate_tokens(request))
                async with semaphore, asyncio.timeout(cfg.request_timeout_s):
                    return await self._post(client, url, request)

            return list(await asyncio.gather(*(self._with_retries(attempt, r) for r in requests)))

    async def _post(
        self, client: httpx.AsyncClient, url: str, request: GenerationRequest
    ) -> GenerationResult:
        response = await client.post(url, json=build_body(self.config, request))
        status = response.status_code
        detail = f"HTTP {status}: {response.text[:200]}"
        if status == 429:
            raise RateLimited(detail, parse_retry_after(response.headers))
        if status in RETRYABLE_STATUS:
            raise ServerError(detail, parse_retry_after(response.headers))
        if status >= 400:
            raise ClientError(detail)
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise InvalidResponse(f"body is not JSON: {response.text[:80]!r}") from exc
        return parse_completion(request.request_id, payload, request.sampling.max_tokens)

    async def _with_retries(
        self,
        attempt: Callable[[GenerationRequest], Awaitable[GenerationResult]],
        request: GenerationRequest,
    ) -> GenerationResult:
        cfg = self.config
        for number in range(1, cfg.max_attempts + 1):
            wait: float | None = None
            try:
                result = await attempt(request)
                result.attempts = number
                return result
            except RetryableError as exc:
                error, wait = exc, exc.retry_after
            except (httpx.RequestError, TimeoutError) as exc:
                error = exc
            except Exception as exc:  # ClientError or anything unforeseen: not worth a retry
                return self._failed(request, exc, number)
            if number == cfg.max_attempts:
                return self._failed(request, error, number)
            delay = backoff_delay(number, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
            await asyncio.sleep(min(cfg.max_retry_after_s, wait) if wait is not None else delay)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    @staticmethod
    def _failed(request: GenerationRequest, exc: BaseException, attempts: int) -> GenerationResult:
        timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
        message = str(exc) or ("no response within the time limit" if timed_out else repr(exc))
        return GenerationResult(
            request_id=request.request_id,
            text="",
            finish_reason="error",
            error=f"{type(exc).__name__}: {message}",
            attempts=attempts,
        )
