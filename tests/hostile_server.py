"""A loopback chat-completions server that misbehaves on purpose (a test double, tests only).

Each request gets one behaviour: the prompt's prefix names it (`surrogate:...`), or, for
prompts the test cannot choose (a real stage's templates), the first distinct prompts the
server sees are handed the behaviours in `plan`, one each, and keep them for the
server's lifetime, so a re-run meets the same answers. Everything that reaches the server
is counted per prompt, so "a re-run re-sent only X" is measured at the server.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIB = 1024 * 1024


def completion(body: dict, content: object, **overrides: object) -> dict:
    """A well-formed chat completion for `body`, with fields replaced by `overrides`."""
    prompt = body["messages"][-1]["content"]
    payload = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": max(1, len(prompt) // 4), "completion_tokens": 5},
    }
    usage = overrides.pop("usage", None)
    if usage is not None:
        payload["usage"] = usage
    finish = overrides.pop("finish_reason", "stop")
    payload["choices"][0]["finish_reason"] = finish
    payload.update(overrides)
    return payload


def good_text(prompt: str) -> str:
    return f"A fresh rewrite, number {zlib.crc32(prompt.encode()) % 1000}, in plain words."


# name -> what the answer is; `body` is the request, `prompt` its last message
BEHAVIOURS = (
    "ok",
    "surrogate",  # content "\ud800" escaped in valid JSON
    "nonstring",  # content 12345
    "huge",  # huge_bytes of content for a small max_tokens, no Content-Length
    "gzipbomb",  # a small gzip body that unpacks to huge_bytes
    "negtokens",  # usage counts negative
    "hugetokens",  # usage counts of 10**30
    "inftokens",  # usage Infinity (valid to Python's json, not to JSON)
    "natokens",  # usage "n/a"
    "client400",  # a permanent 400
    "othermodel",  # answered by another model than asked for
    "trickle",  # headers, then a byte every TRICKLE_INTERVAL_S
    "nofinish",  # finish_reason "tool_calls": not a text answer
    "brotli",  # Content-Encoding: br, never offered
    "deepjson",  # 50k nested arrays: past json's recursion limit
)


class QuietServer(ThreadingHTTPServer):
    """Clients hang up mid-body (that is what caps and deadlines do); no tracebacks."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return None


class HostileServer:
    """Threaded server on 127.0.0.1:0; use as a context manager."""

    def __init__(
        self,
        plan: Sequence[str] = (),
        huge_bytes: int = 30 * MIB,
        trickle_interval_s: float = 1.0,
    ) -> None:
        self.plan = list(plan)
        self.huge_bytes = huge_bytes
        self.trickle_interval_s = trickle_interval_s
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.assigned: dict[str, str] = {}
        self.stop = threading.Event()
        self.block = b"x" * MIB
        self._bomb: bytes | None = None
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()

    def gzip_bomb(self, body: dict) -> bytes:
        """A gzip body unpacking to `huge_bytes`; built once, so serving it allocates little."""
        with self.lock:
            if self._bomb is None:
                raw = json.dumps(completion(body, "x" * self.huge_bytes)).encode()
                self._bomb = gzip.compress(raw, compresslevel=9)
            return self._bomb

    def prompts_with(self, behaviour: str) -> list[str]:
        with self.lock:
            return [p for p, b in self.assigned.items() if b == behaviour]

    def behaviour(self, prompt: str) -> str:
        """The prompt's behaviour: its prefix if it names one, else its place in the plan."""
        prefix = prompt.split(":", 1)[0]
        if prefix in BEHAVIOURS:
            return prefix
        with self.lock:
            if prompt not in self.assigned:
                index = len(self.assigned)
                self.assigned[prompt] = self.plan[index] if index < len(self.plan) else "ok"
            return self.assigned[prompt]

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

            def _json(self, payload: dict) -> None:
                self._send(200, json.dumps(payload).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with owner.lock:
                    owner.seen[prompt] += 1
                kind = owner.behaviour(prompt)
                text = good_text(prompt)
                if kind == "surrogate":
                    raw = json.dumps(completion(body, "broken \ud800 bytes"))
                    return self._send(200, raw.encode("ascii"))
                if kind == "nonstring":
                    return self._json(completion(body, 12345))
                if kind == "huge":
                    return self._huge(body)
                if kind == "gzipbomb":
                    return self._send(200, owner.gzip_bomb(body), {"Content-Encoding": "gzip"})
                if kind == "negtokens":
                    usage = {"prompt_tokens": -50, "completion_tokens": -7}
                    return self._json(completion(body, text, usage=usage))
                if kind == "hugetokens":
                    usage = {"prompt_tokens": 10**30, "completion_tokens": 10**30}
                    return self._json(completion(body, text, usage=usage))
                if kind == "inftokens":
                    raw = json.dumps(completion(body, text, usage={"prompt_tokens": 1}))
                    raw = raw.replace('"prompt_tokens": 1', '"prompt_tokens": Infinity')
                    return self._send(200, raw.encode())
                if kind == "natokens":
                    usage = {"prompt_tokens": "n/a", "completion_tokens": "n/a"}
                    return self._json(completion(body, text, usage=usage))
                if kind == "client400":
                    return self._send(400, b'{"error": {"message": "bad request"}}')
                if kind == "othermodel":
                    return self._json(completion(body, text, model="some-other-model"))
                if kind == "trickle":  # padded: 4 KiB at a byte a second outlasts any deadline
                    return self._trickle(json.dumps(completion(body, text)).encode().ljust(4096))
                if kind == "nofinish":
                    return self._json(completion(body, text, finish_reason="tool_calls"))
                if kind == "brotli":  # an encoding the client did not offer and cannot bound
                    raw = json.dumps(completion(body, text)).encode()
                    return self._send(200, raw, {"Content-Encoding": "br"})
                if kind == "deepjson":
                    return self._send(200, b"[" * 50_000 + b"]" * 50_000)
                return self._json(completion(body, text))

            def _huge(self, body: dict) -> None:
                head, tail = json.dumps(completion(body, "@")).encode().split(b"@")
                self.close_connection = True  # the body ends when the connection does
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(head)
                block = memoryview(owner.block)
                for start in range(0, owner.huge_bytes, MIB):
                    self.wfile.write(block[: min(MIB, owner.huge_bytes - start)])
                self.wfile.write(tail)

            def _trickle(self, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.flush()
                for byte in payload:
                    if owner.stop.wait(owner.trickle_interval_s):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

        return Handler

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    """Poll `condition()` until true or `timeout_s` passes (for server-side counters)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
