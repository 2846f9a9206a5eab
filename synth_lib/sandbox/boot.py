"""The code that runs inside the sandbox: limits, the sample, one status line per sample.

This file is never imported inside the sandbox (the repository is not visible there): its
source is handed to `python -c`, so it uses the standard library only, and at sample time
only modules that are free to import. Two entry points:

- `main()` (rlimit-only mode): one fresh interpreter per sample.
- `zygote()` (bwrap mode): a fork server, one per concurrency slot, started once inside
  bubblewrap with common modules preloaded. For each sample it forks a child that enters
  new mount, PID and IPC namespaces, mounts a fresh size-capped tmpfs on /tmp and a fresh
  /proc, forks an init (PID 1 of the sample: when the sample's main process ends, the
  kernel kills everything left in that namespace), and forks the sample itself, which
  drops every capability (and, when started as root, switches to the slot's uid) before
  any of its code runs. The zygote never runs sample code, so samples share no state.

Before its first line runs, every sample also joins a fresh anonymous session keyring (it
never sees the host's) and installs the seccomp filter the host compiled (`sandbox_seccomp`:
keyrings, namespaces, mounts, ptrace, bpf, netlink... fail with EPERM).

The sample writes a status line (a Python literal) to the status descriptor so the host
can tell an assertion from an exception from a limit. Processes the sample forks also fall
through to this code; their status lines carry their own pid and the host ignores them.
"""

import builtins
import errno
import os
import resource
import sys

LIMIT_ERRNOS = {errno.EFBIG, errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EMFILE}
PRELOAD = ("typing", "re", "collections", "itertools", "functools", "math", "heapq", "bisect",
           "string", "dataclasses", "fractions", "decimal", "statistics", "textwrap")  # fmt: skip
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x08000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER, KEYCTL_JOIN_SESSION_KEYRING = 22, 2, 1
SETUP_FAILED = 70


def _config(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def _report(fd: int, **status: object) -> None:
    os.write(fd, (repr(status) + "\n").encode("utf-8", "backslashreplace"))


def _classify(exc: BaseException) -> tuple[str, str | None, str]:
    """(verdict, exception type, reason) for an exception that escaped the sample."""
    name = type(exc).__name__
    try:
        message = str(exc)[:500]
    except Exception:
        message = "<unprintable>"
    if isinstance(exc, SystemExit):
        if exc.code in (None, 0, False):
            return "passed", None, ""
        return "failed", None, f"exit status {exc.code!r}"
    if isinstance(exc, AssertionError):
        return "failed", name, message or "assertion failed"
    if isinstance(exc, MemoryError):
        return "resource_limit", name, "memory limit"
    if isinstance(exc, OSError) and exc.errno in LIMIT_ERRNOS:
        return "resource_limit", name, message
    return "error", name, message


def run_sample(source: bytes, cfg: dict[str, int]) -> None:
    """Apply the rlimits, run `source` as __main__, report, and exit (never returns)."""
    status_fd, me = cfg["status_fd"], os.getpid()
    _report(status_fd, pid=me, started=True)
    cpu = cfg["cpu_s"]
    for kind, soft, hard in (
        (resource.RLIMIT_AS, cfg["memory_bytes"], cfg["memory_bytes"]),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, cfg["file_size_bytes"], cfg["file_size_bytes"]),
        (resource.RLIMIT_NOFILE, cfg["max_open_files"], cfg["max_open_files"]),
        (resource.RLIMIT_NPROC, cfg["max_processes"], cfg["max_processes"]),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(kind, (soft, hard))
    builtins.exit = builtins.quit = sys.exit  # `site` is skipped (-S) for a fast start
    sys.argv = ["main.py"]
    module = type(sys)("__main__")
    module.__file__ = "main.py"
    sys.modules["__main__"] = module
    try:
        exec(compile(source, "main.py", "exec"), module.__dict__)
        verdict, exc_type, reason = "passed", None, ""
    except BaseException as exc:
        verdict, exc_type, reason = _classify(exc)
        if verdict != "passed" and not isinstance(exc, SystemExit):
            try:  # imported only now: it is slow to import, and printing can hit a limit
                import traceback

                traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
            except BaseException:
                pass
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib is too slow to import here)
            stream.flush()
        except (OSError, ValueError):
            pass
    _report(status_fd, pid=os.getpid(), main=os.getpid() == me, verdict=verdict,
            exc_type=exc_type, reason=reason)  # fmt: skip
    os._exit(0 if verdict == "passed" else 1)


def _read_fd(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def main() -> None:
    """rlimit-only mode: this interpreter runs exactly one sample."""
    cfg = _config(sys.argv[2])
    source = _read_fd(cfg["code_fd"])
    kernel = _Kernel()
    kernel.join_new_session_keyring(cfg["keyctl_nr"])
    kernel.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    kernel.install_seccomp(_read_fd(cfg["seccomp_fd"]))
    run_sample(source, cfg)


class _Kernel:
    """The few syscalls the zygote needs that Python 3.11's os module lacks."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

    def call(self, name: str, *args: object) -> None:
        if getattr(self.libc, name)(*args) != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{name}: {os.strerror(err)}")

    def mount(self, source: str, target: str, fstype: str | None, flags: int, data: str) -> None:
        self.call("mount", source.encode(), target.encode(),
                  fstype.encode() if fstype else None, flags, data.encode() or None)  # fmt: skip

    def drop_privileges(self, uid: int) -> None:
        """No capabilities in any set, no new privileges, and uid `uid` if it is >= 0."""
        ctypes = self.ctypes
        for cap in range(64):
            self.libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last cap
        self.call("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        self.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if uid >= 0:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, self
        self.call("capset", header, (ctypes.c_uint32 * 6)())

    def join_new_session_keyring(self, keyctl_nr: int) -> None:
        """Leave the inherited session keyring for a fresh anonymous one (best effort: where
        keyctl is already denied, e.g. in a container, no keyring is reachable anyway)."""
        if keyctl_nr >= 0:
            self.libc.syscall(keyctl_nr, KEYCTL_JOIN_SESSION_KEYRING, None)

    def install_seccomp(self, bpf: bytes) -> None:
        """Filter this process and all it forks with `bpf` (needs no_new_privs already set)."""
        ctypes = self.ctypes

        class Program(ctypes.Structure):
            _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

        program = Program(len(bpf) // 8, bpf)
        self.call("prctl", PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _sample_process(job: dict[str, int], fds: list[int], kernel: _Kernel, bpf: bytes) -> None:
    code_fd, out_fd, err_fd, status_fd = fds
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    source = _read_fd(code_fd)
    for fd in (out_fd, err_fd):
        os.close(fd)
    os.chdir("/tmp")
    kernel.join_new_session_keyring(job["keyctl_nr"])
    kernel.drop_privileges(job["uid"])
    kernel.install_seccomp(bpf)
    run_sample(source, dict(job, status_fd=status_fd))


def _namespace_init(job: dict[str, int], fds: list[int], kernel: _Kernel, bpf: bytes) -> None:
    """PID 1 of the sample's namespace: reap until the sample's main process ends."""
    kernel.call("prctl", PR_SET_PDEATHSIG, 9, 0, 0, 0)
    kernel.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "")
    sample = os.fork()
    if sample == 0:
        _sample_process(job, fds, kernel, bpf)
    for fd in fds:
        os.close(fd)
    code = SETUP_FAILED
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == sample:
            code = _exit_code(status)
            break
    os._exit(code)


def _isolate(job: dict[str, int], fds: list[int], kernel: _Kernel, bpf: bytes) -> None:
    """Child of the zygote: new namespaces and tmpfs, then the init; exit with its status."""
    try:
        kernel.call("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
        kernel.mount("none", "/", None, MS_REC | MS_PRIVATE, "")
        tmpfs = f"size={job['tmpfs_bytes']},mode=1777"
        kernel.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmpfs)
        init = os.fork()
        if init == 0:
            _namespace_init(job, fds, kernel, bpf)
    except BaseException as exc:
        os.write(fds[2], f"sandbox setup failed: {exc!r}\n".encode())
        os._exit(SETUP_FAILED)
    for fd in fds:
        os.close(fd)
    os._exit(_exit_code(os.waitpid(init, 0)[1]))


def _supervise(sock: object, pid: int) -> int:
    """Wait for the sample's tree to end, killing it if the host asks; its exit code."""
    import select

    pidfd = os.pidfd_open(pid)
    try:
        while True:
            ready = select.select([sock, pidfd], [], [])[0]
            if pidfd in ready:
                return _exit_code(os.waitpid(pid, 0)[1])
            if sock.recv(64) in (b"kill", b""):
                os.kill(pid, 9)
    finally:
        os.close(pidfd)


def zygote() -> None:
    """bwrap mode: serve samples sent over the control socket until it closes."""
    import socket

    cfg = _config(sys.argv[2])
    for name in PRELOAD:
        __import__(name)
    kernel = _Kernel()
    kernel.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)  # samples cannot touch the zygote
    kernel.join_new_session_keyring(cfg["keyctl_nr"])  # never hold the host's keyring
    bpf = _read_fd(cfg["seccomp_fd"])
    sock = socket.socket(fileno=cfg["control_fd"])
    sock.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 4)
        except OSError:
            return
        if message == b"kill" and not fds:
            continue  # a kill that crossed the sample's normal end
        if not message or len(fds) != 4:
            return
        pid = os.fork()
        if pid == 0:
            sock.close()
            job = dict(_config(message.decode()), keyctl_nr=cfg["keyctl_nr"])
            _isolate(job, fds, kernel, bpf)
        for fd in fds:
            os.close(fd)
        sock.send(f"done {_supervise(sock, pid)}".encode())


if __name__ == "__main__":
    {"main": main, "zygote": zygote}[sys.argv[1]]()
