"""The host side of a sample's processes: reading their pipes and ending their tree.

Output is read with a cap and a deadline so neither 1 GB of stdout nor a sample that
never exits can stall the stage. Ending the tree is, under bubblewrap, the kernel's job:
each sample lives in its own PID namespace, and when its init ends the kernel kills every
process left in it. In rlimit-only mode there is no namespace, so after killing the
process group we sweep /proc for anything still running as the run's private uid (as
root) or still carrying the run's marker in its environment (best effort: a process can
wipe it).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SWEEP_PASSES = 50
EXIT_GRACE_S = 0.2  # after the sample exits, how long stray holders of its pipes may linger
STATUS_CAP = 1 << 16


def _live_uid(pid_dir: Path) -> int | None:
    """The real uid of a process that is still running (None for zombies and the vanished)."""
    try:
        fields = dict(line.split(":", 1) for line in (pid_dir / "status").read_text().splitlines())
        if fields["State"].split()[0] in ("Z", "X"):
            return None
        return int(fields["Uid"].split()[0])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _has_marker(pid_dir: Path, marker: bytes) -> bool:
    try:
        return marker in (pid_dir / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def sweep(*, uid: int | None, marker: str | None) -> int:
    """SIGKILL every process running as `uid` or carrying `marker`; repeat until none is left."""
    needle = f"SYNTH_SANDBOX_RUN={marker}".encode() if marker else None
    killed = 0
    for _ in range(SWEEP_PASSES):
        found = 0
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                continue
            hit = uid is not None and _live_uid(pid_dir) == uid
            hit = hit or (needle is not None and _has_marker(pid_dir, needle))
            if hit:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                    found += 1
        killed += found
        if not found:
            break
    return killed


def run_fresh(
    argv_for: Callable[[int, int, int], list[str]],
    source: bytes,
    *,
    seccomp_bpf: bytes,
    env: dict[str, str],
    uid: int | None,
    marker: str,
    deadline: float,
    cap: int,
) -> tuple[Capture, int | None]:
    """rlimit-only mode: one fresh interpreter, in a scratch directory, for one sample.

    `argv_for(code_fd, status_fd, seccomp_fd)` builds the command; `uid` (as root) owns the
    scratch dir.
    """
    code_fd = os.memfd_create("sample", 0)
    policy_fd = os.memfd_create("seccomp", 0)
    status_r, status_w = os.pipe()
    workdir = tempfile.mkdtemp(prefix="sandbox-")
    try:
        for fd, data in ((code_fd, source), (policy_fd, seccomp_bpf)):
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
        if uid is not None:
            os.chown(workdir, uid, uid)
        run_env = {**env, "HOME": workdir, "TMPDIR": workdir, "SYNTH_SANDBOX_RUN": marker}
        proc = subprocess.Popen(
            argv_for(code_fd, status_w, policy_fd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(code_fd, status_w, policy_fd),
            env=run_env,
            cwd=workdir,
            start_new_session=True,
        )
        os.close(status_w)
        status_w = -1
        assert proc.stdout is not None and proc.stderr is not None
        try:
            capture = drain(
                proc.stdout.fileno(),
                proc.stderr.fileno(),
                status_r,
                deadline,
                cap,
                exited=lambda: proc.poll() is not None,
            )
            if not (capture.timed_out or capture.overflow):  # pipes closed: keep the clock
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    capture.timed_out = True
        finally:
            kill_run(proc, uid=uid, marker=marker)
            proc.stdout.close()
            proc.stderr.close()
        return capture, proc.returncode
    finally:
        for fd in (code_fd, policy_fd, status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def kill_run(proc: subprocess.Popen[bytes], *, uid: int | None, marker: str | None) -> None:
    """End the run: kill the process group, sweep stragglers (rlimit-only), reap the child."""
    detached_possible = uid is not None or marker is not None
    if proc.returncode is None or detached_possible:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if detached_possible:
        sweep(uid=uid, marker=marker)
    proc.wait()


@dataclass
class Capture:
    """What one run wrote, and whether reading stopped at the deadline or the output cap."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    status: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    overflow: str | None = None


def drain(
    out_fd: int,
    err_fd: int,
    status_fd: int,
    deadline: float,
    cap: int,
    exited: Callable[[], bool] = lambda: False,
) -> Capture:
    """Read stdout, stderr and status until EOF, the deadline, or `cap` bytes of output.

    `exited` tells whether the sample's main process is gone; if its pipes are still held
    open by strays EXIT_GRACE_S later (possible only without a PID namespace), stop reading.
    """
    capture = Capture()
    buffers = {
        out_fd: ("stdout", capture.stdout, cap + 1),
        err_fd: ("stderr", capture.stderr, cap + 1),
        status_fd: ("status", capture.status, STATUS_CAP),
    }
    sel = selectors.DefaultSelector()
    for fd in buffers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                capture.timed_out = True
                break
            if exited_at is None and exited():
                exited_at = now
            if exited_at is not None and now - exited_at > EXIT_GRACE_S:
                break
            for key, _ in sel.select(timeout=min(deadline - now, 0.1)):
                name, buf, limit = buffers[key.fd]
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf += chunk[: max(0, limit - len(buf))]
                if len(buf) >= limit and name != "status":
                    capture.overflow = name
                    return capture
    finally:
        sel.close()
    return capture
