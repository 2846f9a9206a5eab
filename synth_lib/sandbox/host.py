"""Run untrusted Python and get exactly one verdict per run, whatever the code does.

Model-written code is run thousands of times per stage, so the sandbox must never let a
sample touch the host, the network or the pipeline's secrets, must never crash the stage,
and must tell wrong code (`failed`, `error`) from a limit (`timeout`, `resource_limit`)
from a broken sandbox (`sandbox_error`: retried, never scored as wrong code).

Modes: `bwrap` (the default; see `sandbox_argv` for exactly what is isolated) and
`rlimit_only`, which only sets rlimits, a scratch directory, a cleared environment and
(as root) an unprivileged uid: no filesystem, network or PID isolation. Without bwrap on
PATH the sandbox refuses to start unless `rlimit_only` is asked for, and every result
names the mode it ran under.
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
import queue
import shutil
import signal
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synth_lib.sandbox import argv as sandbox_argv
from synth_lib.sandbox import seccomp
from synth_lib.sandbox.process import Capture, run_fresh
from synth_lib.sandbox.zygote import Zygote, ZygoteBroken

MODES = ("bwrap", "rlimit_only")
VERDICTS = ("passed", "failed", "error", "timeout", "resource_limit", "sandbox_error")
BOOT_SOURCE = (Path(__file__).parent / "boot.py").read_text()
LIMIT_SIGNALS = {signal.SIGKILL, signal.SIGXCPU, signal.SIGXFSZ}
MIB = 1 << 20


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be provided here (the sandbox refuses to run)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-sample limits; `max_processes` counts the sample itself."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 16
    max_open_files: int = 256
    file_size_mb: int = 64
    tmpfs_mb: int = 128
    output_bytes: int = MIB

    def boot_limits(self) -> dict[str, int]:
        return {
            "memory_bytes": self.memory_mb * MIB,
            "cpu_s": max(1, math.ceil(self.timeout_s)),
            "file_size_bytes": self.file_size_mb * MIB,
            "max_open_files": self.max_open_files,
            "max_processes": self.max_processes,
        }


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sample. `mode` says how strongly it was isolated."""

    verdict: str
    mode: str
    reason: str = ""
    exc_type: str | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self, max_output_chars: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict; output cut to `max_output_chars` (flagged as truncated)."""
        out = asdict(self)
        if max_output_chars is not None:
            for key in ("stdout", "stderr"):
                if len(out[key]) > max_output_chars:
                    out[key] = out[key][:max_output_chars]
                    out[f"{key}_truncated"] = True
        return out


class Sandbox:
    """Runs samples one at a time (`run`) or many at once on a thread pool (`run_many`).

    In bwrap mode each concurrency slot keeps a zygote (a fork server inside bubblewrap,
    see `sandbox_boot`) alive between samples; `close()` (or leaving a `with` block, or
    garbage collection) stops them.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        mode: str = "bwrap",
        concurrency: int = 2,
        retries: int = 2,
        python: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if not 1 <= concurrency <= sandbox_argv.MAX_SLOTS:
            raise ValueError(f"concurrency must be 1..{sandbox_argv.MAX_SLOTS}")
        self.limits = limits or SandboxLimits()
        self.mode = mode
        self.concurrency = concurrency
        self.retries = retries
        base_python, self._prefix = sandbox_argv.interpreter()
        self.python = python or base_python
        self._as_root = os.geteuid() == 0
        self._check_available()
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(concurrency):
            self._slots.put(slot)
        self._zygotes: list[Zygote | None] = [None] * concurrency
        # bwrap dies with the *thread* that started it (PR_SET_PDEATHSIG), so every zygote
        # is started from this one long-lived thread, not from short-lived pool workers.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawn")
        self._finalizer = weakref.finalize(self, _shutdown, self._zygotes, self._spawner)

    def _check_available(self) -> None:
        if self.mode == "bwrap" and shutil.which("bwrap") is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not on PATH: install it (Debian/Ubuntu: apt-get install"
                " bubblewrap) or explicitly choose the weaker mode='rlimit_only'"
            )
        if self.mode == "rlimit_only" and self._as_root:
            if shutil.which("setpriv") is None:
                raise SandboxUnavailable("rlimit_only as root needs setpriv (util-linux)")
            if not sandbox_argv.world_accessible(self.python):
                raise SandboxUnavailable(
                    f"rlimit_only as root runs samples as an unprivileged uid, which cannot "
                    f"reach {self.python}; pass python= an interpreter outside private dirs"
                )

    def close(self) -> None:
        """Stop the zygotes; the sandbox cannot run samples afterwards."""
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _processes_already_counted(self) -> int:
        """Processes the kernel already counts against the sample's RLIMIT_NPROC.

        bwrap as root: none (a per-slot uid). bwrap otherwise: bwrap's init, the zygote and
        the sample's two setup processes (the count is per user namespace). rlimit_only
        without root: every process of this user.
        """
        if self.mode == "bwrap":
            return 0 if self._as_root else 4
        if self._as_root:
            return 0
        return sandbox_argv.count_tasks(os.getuid())

    def warm(self) -> None:
        """Start every slot's zygote now, so the first batch does not pay for it."""
        if self.mode != "bwrap":
            return
        slots = [self._slots.get() for _ in range(self.concurrency)]
        try:
            for slot in slots:
                with contextlib.suppress(ZygoteBroken):
                    self._zygote(slot)
        finally:
            for slot in slots:
                self._slots.put(slot)

    def probe(self) -> SandboxResult:
        """Warm up, then run a trivial sample: `sandbox_error` means no sandbox here."""
        self.warm()
        return self.run("pass")

    def run(self, code: str) -> SandboxResult:
        """Run one sample; `sandbox_error` is retried up to `retries` times."""
        slot = self._slots.get()
        try:
            result = self._run_once(code, slot)
            attempts = 1
            while result.verdict == "sandbox_error" and attempts <= self.retries:
                attempts += 1
                result = self._run_once(code, slot)
            return SandboxResult(**{**asdict(result), "attempts": attempts})
        finally:
            self._slots.put(slot)

    def run_many(self, codes: Sequence[str]) -> list[SandboxResult]:
        """Score many samples concurrently, each on its own; results in input order."""
        if not codes:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(codes))) as pool:
            return list(pool.map(self.run, codes))

    def _zygote(self, slot: int) -> Zygote:
        zygote = self._zygotes[slot]
        if zygote is None:
            zygote = Zygote(
                lambda control_fd, seccomp_fd: sandbox_argv.bwrap_argv(
                    python=self.python,
                    prefix=self._prefix,
                    boot=BOOT_SOURCE,
                    control_fd=control_fd,
                    seccomp_fd=seccomp_fd,
                    keyctl_nr=seccomp.syscall_number("keyctl"),
                    as_root=self._as_root,
                    tmpfs_bytes=MIB,
                ),
                lambda start: self._spawner.submit(start).result(),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                seccomp_bpf=seccomp.compiled_policy(),
            )
            self._zygotes[slot] = zygote
        return zygote

    def _run_once(self, code: str, slot: int) -> SandboxResult:
        began = time.monotonic()
        source = code.encode("utf-8", "surrogatepass")
        uid = sandbox_argv.slot_uid(slot)
        limits = self.limits.boot_limits()
        counted = self._processes_already_counted()
        cap = self.limits.output_bytes
        try:
            if self.mode == "bwrap":
                zygote = self._zygote(slot)
                began = time.monotonic()
                job = sandbox_argv.job_config(
                    limits,
                    already_counted=counted,
                    uid=uid if self._as_root else -1,
                    tmpfs_bytes=self.limits.tmpfs_mb * MIB,
                )
                run = zygote.run(source, job, began + self.limits.timeout_s, cap)
                capture, returncode = run.capture, run.exit_code
            else:
                capture, returncode = run_fresh(
                    lambda code_fd, status_fd, seccomp_fd: sandbox_argv.rlimit_only_argv(
                        python=self.python,
                        boot=BOOT_SOURCE,
                        config=sandbox_argv.job_config(
                            limits,
                            already_counted=counted,
                            code_fd=code_fd,
                            status_fd=status_fd,
                            seccomp_fd=seccomp_fd,
                            keyctl_nr=seccomp.syscall_number("keyctl"),
                        ),
                        as_root=self._as_root,
                        uid=uid,
                    ),
                    source,
                    seccomp_bpf=seccomp.compiled_policy(),
                    env=dict(sandbox_argv.SANDBOX_ENV),
                    uid=uid if self._as_root else None,
                    marker=f"{os.getpid()}-{slot}-{time.time_ns()}",
                    deadline=began + self.limits.timeout_s,
                    cap=cap,
                )
        except ZygoteBroken as exc:
            broken, self._zygotes[slot] = self._zygotes[slot], None
            if broken is not None:
                broken.close()
            return self._result("sandbox_error", began, reason=str(exc)[:300])
        except OSError as exc:
            return self._result("sandbox_error", began, reason=f"could not start: {exc}")
        return self._classify(returncode, capture, began)

    def _result(self, verdict: str, began: float, **fields: Any) -> SandboxResult:
        return SandboxResult(
            verdict=verdict,
            mode=self.mode,
            duration_s=round(time.monotonic() - began, 4),
            **fields,
        )

    def _classify(self, returncode: int | None, cap: Capture, began: float) -> SandboxResult:
        """The verdict: limits first, then the status line, which must agree with the exit
        status the zygote (outside the sample's tree) observed; no final status is no pass."""
        cap_bytes = self.limits.output_bytes
        out = {
            "stdout": cap.stdout[:cap_bytes].decode("utf-8", "replace"),
            "stderr": cap.stderr[:cap_bytes].decode("utf-8", "replace"),
            "stdout_truncated": len(cap.stdout) > cap_bytes,
            "stderr_truncated": len(cap.stderr) > cap_bytes,
            "exit_code": returncode,
        }
        started, final = _parse_status(cap.status)
        if started is None:
            tail = out["stderr"].strip().splitlines()[-1:] or ["no status from the sandbox"]
            return self._result("sandbox_error", began, reason=tail[0][:300], **out)
        if cap.timed_out:
            reason = f"wall-clock timeout after {self.limits.timeout_s}s"
            return self._result("timeout", began, reason=reason, **out)
        if cap.overflow:
            reason = f"{cap.overflow} exceeded {cap_bytes} bytes"
            return self._result("resource_limit", began, reason=reason, **out)
        if final is not None and final["verdict"] == "passed" and returncode != 0:
            reason = f"a status line claims passed but the exit status is {returncode}"
            return self._result("failed", began, reason=reason, **out)
        if final is not None:
            return self._result(
                final["verdict"],
                began,
                reason=final.get("reason") or "",
                exc_type=final.get("exc_type"),
                **out,
            )
        sig = _signal_of(returncode, bwrap=self.mode == "bwrap")
        if sig is not None:
            name = signal.Signals(sig).name
            if sig in LIMIT_SIGNALS:
                return self._result("resource_limit", began, reason=f"killed by {name}", **out)
            return self._result("error", began, reason=f"killed by {name}", exc_type=name, **out)
        if returncode == 0:
            reason = "exited 0 before its final status (early exit)"
            return self._result("failed", began, reason=reason, **out)
        return self._result("failed", began, reason=f"exit status {returncode}", **out)


def _shutdown(zygotes: list[Zygote | None], spawner: ThreadPoolExecutor) -> None:
    for slot, zygote in enumerate(zygotes):
        if zygote is not None:
            zygote.close()
            zygotes[slot] = None
    spawner.shutdown(wait=False)


def _signal_of(returncode: int | None, *, bwrap: bool) -> int | None:
    """The signal that ended the sample (bwrap reports 128+N; a direct child reports -N)."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if bwrap and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _parse_status(raw: bytes) -> tuple[int | None, dict[str, Any] | None]:
    """(pid of the sample's main process, its final status) from the status channel."""
    started: int | None = None
    final: dict[str, Any] | None = None
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            item = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if not isinstance(item, dict):
            continue
        if started is None and item.get("started"):
            started = item.get("pid")
        elif item.get("main") and item.get("pid") == started and item.get("verdict") in VERDICTS:
            final = item
    return started, final
