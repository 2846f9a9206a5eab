"""The host side of a zygote (the fork server in `sandbox_boot`): start, feed, end.

A zygote is one bubblewrap sandbox per concurrency slot, started once. Each sample costs
a fork instead of an interpreter start (in a fresh interpreter `import typing` alone
costs more than the rest of a typical test). The host sends the sample's source and its
own stdout, stderr and status pipes over a Unix socket and reads the pipes itself, so the
output cap and the deadline are enforced here; on either, it asks the zygote to kill the
sample. Anything unexpected from the zygote marks it broken: the caller reports a
`sandbox_error` and starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from synth_lib.sandbox.process import Capture, drain

START_TIMEOUT_S = 60.0
DONE_TIMEOUT_S = 10.0


class ZygoteBroken(RuntimeError):
    """The zygote could not start, or stopped answering: an infrastructure failure."""


@dataclass
class ZygoteRun:
    capture: Capture
    exit_code: int


class Zygote:
    """One running fork server; not thread-safe (one slot, one sample at a time)."""

    def __init__(
        self,
        make_argv: Callable[[int], list[str]],
        spawn: Callable[[Callable[[], subprocess.Popen[bytes]]], subprocess.Popen[bytes]],
        env: dict[str, str],
    ) -> None:
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = host
        try:
            self.proc = spawn(
                lambda: subprocess.Popen(
                    make_argv(child.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(child.fileno(),),
                    env=env,
                    start_new_session=True,
                )
            )
        except OSError as exc:
            host.close()
            raise ZygoteBroken(f"could not start the sandbox: {exc}") from exc
        finally:
            child.close()
        host.settimeout(START_TIMEOUT_S)
        try:
            ready = host.recv(64)
        except OSError:
            ready = b""
        host.settimeout(None)
        if ready != b"ready":
            raise ZygoteBroken(self.close() or "the sandbox did not start")

    def run(self, source: bytes, job: str, deadline: float, cap: int) -> ZygoteRun:
        """Run one sample; its output is read here, under `deadline` and `cap`."""
        code_fd = os.memfd_create("sample", 0)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        to_close = [code_fd, out_w, err_w, status_w]
        try:
            os.write(code_fd, source)
            os.lseek(code_fd, 0, os.SEEK_SET)
            try:
                socket.send_fds(self.sock, [job.encode()], to_close)
            except OSError as exc:
                raise ZygoteBroken(f"the sandbox went away: {exc}") from exc
            for fd in to_close:
                os.close(fd)
            to_close = []
            capture = drain(out_r, err_r, status_r, deadline, cap)
            if capture.timed_out or capture.overflow:
                with contextlib.suppress(OSError):
                    self.sock.send(b"kill")
            return ZygoteRun(capture, self._exit_code())
        finally:
            for fd in [*to_close, out_r, err_r, status_r]:
                os.close(fd)

    def _exit_code(self) -> int:
        self.sock.settimeout(DONE_TIMEOUT_S)
        try:
            message = self.sock.recv(64)
        except OSError as exc:
            raise ZygoteBroken(f"no result from the sandbox: {exc}") from exc
        finally:
            self.sock.settimeout(None)
        if not message.startswith(b"done "):
            raise ZygoteBroken(f"unexpected answer from the sandbox: {message[:40]!r}")
        return int(message[5:])

    def close(self) -> str:
        """Stop the zygote (and with it its sandbox); returns the tail of its stderr."""
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        tail = ""
        if self.proc.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(self.proc.stderr.fileno(), False)
                tail = (self.proc.stderr.read(4096) or b"").decode("utf-8", "replace")
            self.proc.stderr.close()
        return tail.strip().splitlines()[-1] if tail.strip() else ""
