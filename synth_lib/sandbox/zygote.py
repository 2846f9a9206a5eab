"""The host side of a zygote (the fork server in `sandbox_boot`): start, feed, end.

A zygote is one bubblewrap sandbox per concurrency slot, started once. Each sample costs
a fork instead of an interpreter start (in a fresh interpreter `import typing` alone
costs more than the rest of a typical test). The host sends the sample's source and its
own stdout, stderr and status pipes over a Unix socket and reads the pipes itself, so the
output cap is enforced here. The deadline is kept here too, independently of the pipes: a
sample that closes every descriptor and sleeps is still waited for only until its deadline
(the zygote's "done" message, not EOF, says the sample's tree has ended). On either limit
the host asks the zygote to kill the sample's whole tree, which it does without a restart.
Anything unexpected from the zygote marks it broken: the caller reports a `sandbox_error`
and starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from synth_lib.sandbox.process import Capture, drain

START_TIMEOUT_S = 60.0
DONE_TIMEOUT_S = 10.0  # after a kill: how long the zygote may take to report the tree gone


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
        make_argv: Callable[[int, int], list[str]],
        spawn: Callable[[Callable[[], subprocess.Popen[bytes]]], subprocess.Popen[bytes]],
        env: dict[str, str],
        seccomp_bpf: bytes,
    ) -> None:
        """`make_argv(control_fd, seccomp_fd)`: the command; `seccomp_bpf`: the samples' filter."""
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        policy = os.memfd_create("seccomp", 0)
        os.write(policy, seccomp_bpf)
        os.lseek(policy, 0, os.SEEK_SET)
        self.sock = host
        try:
            self.proc = spawn(
                lambda: subprocess.Popen(
                    make_argv(child.fileno(), policy),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(child.fileno(), policy),
                    env=env,
                    start_new_session=True,
                )
            )
        except OSError as exc:
            host.close()
            raise ZygoteBroken(f"could not start the sandbox: {exc}") from exc
        finally:
            child.close()
            os.close(policy)
        host.settimeout(START_TIMEOUT_S)
        try:
            ready = host.recv(64)
        except OSError:
            ready = b""
        host.settimeout(None)
        if ready != b"ready":
            raise ZygoteBroken(self.close() or "the sandbox did not start")

    def run(self, source: bytes, job: str, deadline: float, cap: int) -> ZygoteRun:
        """Run one sample; its output is read here, under `deadline` and `cap`.

        Past the deadline the run is `timed_out` whatever its pipes say, and the tree is killed.
        """
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
            code = None
            if not (capture.timed_out or capture.overflow):
                code = self._exit_code(deadline - time.monotonic(), until_deadline=True)
                capture.timed_out = code is None
            if code is None:
                with contextlib.suppress(OSError):
                    self.sock.send(b"kill")
                code = self._exit_code(DONE_TIMEOUT_S)
            return ZygoteRun(capture, code)
        finally:
            for fd in [*to_close, out_r, err_r, status_r]:
                os.close(fd)

    def _exit_code(self, timeout: float, *, until_deadline: bool = False) -> int | None:
        """The sample tree's exit code from the zygote's "done" message, waiting `timeout`.

        `until_deadline`: running out of time is the sample's deadline and returns None (the
        caller kills the tree); otherwise it means the zygote stopped answering.
        """
        self.sock.settimeout(max(timeout, 1e-3))
        try:
            message = self.sock.recv(64)
        except TimeoutError as exc:
            if until_deadline:
                return None
            raise ZygoteBroken(f"no result from the sandbox after {timeout:.1f}s") from exc
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
