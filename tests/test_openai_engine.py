"""The openai backend against a real local HTTP server that misbehaves on purpose.

The server speaks just enough of the chat-completions protocol; what it does with a
request is chosen by the prompt's prefix (`ok:`, `dead:`, `stall:`, ...). Every request
that reaches it is counted, so "the re-run sent only the missing requests" is measured
at the server, not inferred from the client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from synth_lib.engines.base import GenerationRequest, SamplingParams, cache_key
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.failures import failure_metadata, failure_rows
from synth_lib.engines.openai_engine import (
    OpenAIConfig,
    OpenAIEngine,
    TokenBucket,
    backoff_delay,
    build_body,
    estimate_tokens,
    parse_retry_after,
)

REPO = Path(__file__).resolve().parents[1]


class QuietServer(ThreadingHTTPServer):
    """Clients that time out or get killed hang up mid-response; that is the point here."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None


class ChatServer:
    """A threaded chat-completions server whose behaviour per request is set by the prompt."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.arrivals: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.release = threading.Event()
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.seen.values())

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.bodies.clear()
            self.arrivals.clear()
            self.max_in_flight = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with owner.lock:
                    owner.seen[prompt] += 1
                    count = owner.seen[prompt]
                    owner.bodies.append(body)
                    owner.headers.append(dict(self.headers))
                    owner.arrivals.setdefault(prompt, []).append(time.monotonic())
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    self._answer(body, prompt, count)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1

            def _answer(self, body: dict, prompt: str, count: int) -> None:
                kind = prompt.split(":", 1)[0]
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                if kind == "stall":
                    owner.release.wait(30)
                    self.close_connection = True
                    return
                if kind == "dead" or (kind == "flaky500" and count <= 2):
                    return self._send(500, b'{"error": "boom"}')
                if kind == "flaky429" and count == 1:
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
                if kind == "hour429" and count == 1:
                    return self._send(429, b'{"error": "come back later"}', {"Retry-After": "3600"})
                if kind == "always500":
                    return self._send(500, b'{"error": "boom"}')
                if kind == "slow":
                    time.sleep(0.05)
                if kind == "client400":
                    return self._send(400, b'{"error": "bad request"}')
                if kind == "badjson":
                    return self._send(200, b'{"choices": [ not json')
                message: dict = {"role": "assistant", "content": f"answer to {prompt}"}
                reason = {"length": "length", "filter": "content_filter"}.get(kind, "stop")
                if kind == "filter":
                    message["content"] = None
                if kind == "refusal":
                    message = {"role": "assistant", "content": None, "refusal": "I can't."}
                payload = {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": reason}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": 7},
                }
                self._send(200, json.dumps(payload).encode())

        return Handler

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    with ChatServer() as srv:
        yield srv


def make_engine(url: str, **overrides) -> OpenAIEngine:
    config = {
        "base_url": url,
        "model": "test-model",
        "api_key": "sk-test",
        "max_concurrency": 8,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "read_timeout_s": 0.5,
        "request_timeout_s": 5.0,
    }
    return OpenAIEngine(OpenAIConfig(**{**config, **overrides}), seed=0)


def req(prompt: str, index: int = 0, seed: int = 0) -> GenerationRequest:
    return GenerationRequest(f"r{index}", prompt, SamplingParams(max_tokens=32), seed=seed)


def test_ok_request_carries_body_key_seed_and_usage(server):
    [result] = make_engine(server.url).generate([req("ok:hello", seed=7)])
    assert result.ok and result.text == "answer to ok:hello"
    assert (result.prompt_tokens, result.completion_tokens, result.attempts) == (8, 7, 1)
    body = server.bodies[0]
    assert body["seed"] == 7 and body["max_tokens"] == 32 and body["model"] == "test-model"
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_429_with_retry_after_is_honoured_then_succeeds(server):
    began = time.perf_counter()
    [result] = make_engine(server.url).generate([req("flaky429:x")])
    waited = time.perf_counter() - began
    assert result.ok and result.attempts == 2
    assert waited >= 0.9, "Retry-After: 1 must be waited out (backoff alone is ~10 ms)"
    assert server.seen["flaky429:x"] == 2


def test_500s_are_retried_until_success(server):
    [result] = make_engine(server.url, max_attempts=4).generate([req("flaky500:x")])
    assert result.ok and result.attempts == 3 and server.seen["flaky500:x"] == 3


def test_stalled_socket_times_out_and_is_recorded(server):
    began = time.perf_counter()
    results = make_engine(server.url, read_timeout_s=0.3, max_attempts=2).generate(
        [req("stall:x", 0), req("ok:y", 1)]
    )
    assert time.perf_counter() - began < 5
    stalled, fine = results
    assert fine.ok
    assert stalled.finish_reason == "error" and stalled.attempts == 2
    assert stalled.error.startswith("ReadTimeout")
    assert server.seen["stall:x"] == 2


def test_hard_deadline_caps_an_attempt_even_when_reads_do_not_time_out(server):
    engine = make_engine(server.url, read_timeout_s=30, request_timeout_s=0.3, max_attempts=1)
    [result] = engine.generate([req("stall:z")])
    assert result.finish_reason == "error" and result.error.startswith("TimeoutError")


@pytest.mark.parametrize(
    ("prompt", "reason", "error_start"),
    [
        ("length:x", "length", "Truncated"),
        ("filter:x", "content_filter", "ContentFilter"),
        ("refusal:x", "content_filter", "ContentFilter: I can't."),
    ],
)
def test_truncated_and_refused_outputs_are_results_but_never_rows(
    server, prompt, reason, error_start
):
    [result] = make_engine(server.url).generate([req(prompt)])
    assert result.finish_reason == reason and not result.ok
    assert result.error.startswith(error_start)
    assert result.attempts == 1, "a deterministic outcome is not retried"


def test_invalid_json_body_is_retried_then_classified(server):
    [result] = make_engine(server.url).generate([req("badjson:x")])
    assert result.finish_reason == "error" and result.attempts == 3
    assert result.error.startswith("InvalidResponse") and result.text == ""


def test_client_error_is_not_retried(server):
    [result] = make_engine(server.url).generate([req("client400:x")])
    assert result.finish_reason == "error" and result.attempts == 1
    assert result.error.startswith("ClientError: HTTP 400")


def test_connection_refused_is_an_error_result_not_an_exception():
    engine = make_engine("http://127.0.0.1:9/v1", max_attempts=2)
    [result] = engine.generate([req("ok:x")])
    assert result.finish_reason == "error" and result.error.startswith("ConnectError")


def test_three_permanent_failures_in_a_hundred_and_a_rerun_sends_only_them(server, tmp_path):
    requests = [req(f"dead:{i}" if i % 33 == 5 else f"ok:{i}", i) for i in range(100)]
    engine = CachedEngine(make_engine(server.url), ResponseCache(tmp_path / "c.sqlite"))
    results = engine.generate(requests)
    kept = [r for r in results if r.ok]
    failed = failure_rows("rephrasings", requests, results, engine.identity)
    assert (len(results), len(kept), len(failed)) == (100, 97, 3)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert {row["attempts"] for row in failed} == {3}
    assert {row["error_class"] for row in failed} == {"ServerError"}
    assert all(row["retryable"] and len(row["prompt_hash"]) == 32 for row in failed)
    meta = failure_metadata(failed, len(requests))
    assert meta["generation_failures"] == 3 and meta["generation_failures_by_class"] == {
        "ServerError": 3
    }
    assert server.total == 97 + 3 * 3

    server.reset()
    again = CachedEngine(make_engine(server.url), ResponseCache(tmp_path / "c.sqlite"))
    rerun = again.generate(requests)
    assert set(server.seen) == {f"dead:{i}" for i in (5, 38, 71)}
    assert server.total == 3 * 3 and again.stats.cache_hits == 97
    assert sum(r.ok for r in rerun) == 97
    print(
        f"3% permanent failures: kept {len(kept)}, recorded failed {len(failed)}, re-run sent "
        f"{len(server.seen)} requests ({server.total} HTTP attempts)"
    )


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_backoff_is_exponential_full_jitter_capped_measured_at_the_server(server):
    engine = make_engine(server.url, max_attempts=4, backoff_base_s=0.4, backoff_max_s=0.6)
    [result] = engine.generate([req("always500:x")])
    assert result.finish_reason == "error" and result.attempts == 4
    rng = random.Random(0)  # the engine's seed: full jitter in [0, min(cap, base * 2**(n-1))]
    expected = [rng.uniform(0.0, min(0.6, 0.4 * 2 ** (n - 1))) for n in (1, 2, 3)]
    for gap, want in zip(_gaps(server.arrivals["always500:x"]), expected, strict=True):
        assert want - 0.005 <= gap <= want + 0.12, (gap, want)


def test_backoff_draws_spread_over_the_whole_window():
    rng = random.Random(1)
    draws = [backoff_delay(3, 0.5, 60.0, rng) for _ in range(2000)]
    assert 0 <= min(draws) < 0.1 and 1.9 < max(draws) <= 2.0, "uniform in [0, 0.5 * 2**2]"
    assert 0.9 < sum(draws) / len(draws) < 1.1
    assert max(backoff_delay(30, 0.5, 60.0, rng) for _ in range(200)) <= 60.0


def test_retry_after_is_capped_by_max_retry_after(server):
    engine = make_engine(server.url, max_retry_after_s=0.3, request_budget_s=10)
    [result] = engine.generate([req("hour429:x")])
    assert result.ok and result.attempts == 2
    [gap] = _gaps(server.arrivals["hour429:x"])
    assert 0.29 <= gap < 0.8, f"Retry-After: 3600 capped at 0.3 s, waited {gap:.2f} s"


def test_concurrency_bound_holds_at_the_server(server):
    results = make_engine(server.url, max_concurrency=4).generate(
        [req(f"slow:{i}", i) for i in range(24)]
    )
    assert all(r.ok for r in results)
    assert server.max_in_flight == 4, f"{server.max_in_flight} requests in flight at once"


def test_tokens_per_minute_limit_through_the_engine(server):
    engine = make_engine(server.url, tokens_per_minute=600_000)  # 10k/s, a 10k bucket
    requests = [
        GenerationRequest(f"r{i}", f"ok:{i}", SamplingParams(max_tokens=2000)) for i in range(10)
    ]
    cost = estimate_tokens(requests[0])
    assert cost == 2001
    began = time.monotonic()
    assert all(r.ok for r in engine.generate(requests))
    arrivals = sorted(t - began for times in server.arrivals.values() for t in times)
    for index, at in enumerate(arrivals):  # the (index+1)th request waits for its tokens
        earliest = max(0.0, ((index + 1) * cost - 10_000) / 10_000)
        assert at >= earliest - 0.01, (index, at, earliest)
    assert arrivals[-1] >= 0.99


def test_rate_limits_bucket_waits_for_refill():
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        bucket = TokenBucket(60, burst_s=1.0, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(3):
            await bucket.acquire(1)
        big = TokenBucket(600, burst_s=1.0, clock=lambda: now[0], sleep=fake_sleep)
        await big.acquire(40)  # bigger than the bucket: goes through, leaves a debt
        await big.acquire(1)

    asyncio.run(run())
    assert slept[:2] == pytest.approx([1.0, 1.0])
    assert sum(slept[2:]) == pytest.approx(3.1), "40-token debt on a 10/s bucket, then 1 more"


def test_requests_per_minute_limit_spaces_requests_at_the_server(server):
    engine = make_engine(server.url, requests_per_minute=600)  # 10/s, burst 10
    began = time.perf_counter()
    results = engine.generate([req(f"ok:{i}", i) for i in range(15)])
    assert all(r.ok for r in results)
    assert time.perf_counter() - began >= 0.45


def test_retry_after_forms_and_token_estimate():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = "Thu, 01 Jan 2026 12:00:05 GMT"
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=now) == 5.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    request = GenerationRequest("a", "x" * 400, SamplingParams(max_tokens=50), system="y" * 40)
    assert estimate_tokens(request) == 440 // 4 + 50
    body = build_body(
        OpenAIConfig("http://h", "m", max_tokens_field="max_completion_tokens"), request
    )
    assert body["messages"][0] == {"role": "system", "content": "y" * 40}
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


def test_generate_works_from_inside_a_running_event_loop(server):
    async def caller():
        return make_engine(server.url).generate([req("ok:a", 0), req("ok:b", 1)])

    results = asyncio.run(caller())
    assert [r.text for r in results] == ["answer to ok:a", "answer to ok:b"]


CHILD = """
import sys
from synth_lib.engines.base import GenerationRequest
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.openai_engine import OpenAIConfig, OpenAIEngine

engine = OpenAIEngine(OpenAIConfig(base_url=sys.argv[1], model="m", max_concurrency=4))
cached = CachedEngine(engine, ResponseCache(sys.argv[2]), chunk_size=10)
results = cached.generate([GenerationRequest(f"r{i}", f"ok:{i}") for i in range(200)])
print(sum(r.ok for r in results))
"""


def test_kill_minus_9_mid_run_then_rerun_sends_exactly_the_missing(tmp_path):
    cache_path = tmp_path / "cache.sqlite"
    requests = [GenerationRequest(f"r{i}", f"ok:{i}") for i in range(200)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with ChatServer(delay_s=0.02) as srv:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, srv.url, str(cache_path)], env=env, cwd=tmp_path
        )
        deadline = time.monotonic() + 20
        while srv.total < 80 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        answered_before_kill = srv.total

        cache = ResponseCache(cache_path)
        engine = OpenAIEngine(OpenAIConfig(base_url=srv.url, model="m"))
        held = cache.get_many([cache_key(engine.identity, r) for r in requests])
        missing = {r.prompt for r in requests if cache_key(engine.identity, r) not in held}
        assert 0 < len(held) < 200, "the kill must land mid-run"
        assert answered_before_kill >= len(held)

        srv.reset()
        rerun = CachedEngine(engine, cache).generate(requests)
        assert set(srv.seen) == missing and srv.total == len(missing) == 200 - len(held)
        print(
            f"kill -9 after {answered_before_kill} answers: cache held {len(held)}, missing "
            f"{len(missing)}, re-run sent {srv.total} (counted at the server)"
        )
        assert all(r.ok for r in rerun) and len(cache) == 200
