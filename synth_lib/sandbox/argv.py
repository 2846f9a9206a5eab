"""The command lines that start the sandbox: bubblewrap's zygote, or the rlimit-only one.

Isolation in `bwrap` mode. The slot's sandbox (the zygote, see `sandbox_boot`) gets new
PID, network, IPC, UTS and (where possible) cgroup namespaces; a root filesystem holding
only `/usr` (plus the `/lib*`, `/bin` links) and the interpreter's own prefix, read-only;
a minimal `/dev`; the environment cleared to `SANDBOX_ENV`; no network but its own
loopback. Each sample then gets its own mount, PID and IPC namespaces, a fresh
size-capped tmpfs at `/tmp` (its working directory), a `/proc` showing only itself, and
no capabilities. The sample never runs as root:
- bwrap started by root keeps no user namespace (a root-created one maps back to uid 0,
  which the kernel exempts from RLIMIT_NPROC); the sample switches to a per-slot uid that
  no other process on the host uses, so RLIMIT_NPROC counts only that sample;
- bwrap started by anyone else makes a user namespace (uid 65534 inside, nested user
  namespaces disabled); the kernel counts RLIMIT_NPROC per user namespace, so each
  slot's limit is its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import PurePosixPath

SANDBOX_ENV: dict[str, str] = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
}
NOBODY = 65534
# Per-slot uids for root-started samples: unique among live host processes because the
# owning pid is part of the number (pids are unique while alive); 64 slots per process.
SLOT_UID_BASE = 0x4000_0000
MAX_SLOTS = 64
PYTHON_FLAGS = ("-S", "-P", "-B")  # no site, no script dir on sys.path, no .pyc writes
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def slot_uid(slot: int, pid: int | None = None) -> int:
    """The unprivileged uid that concurrency slot `slot` of this process runs samples as."""
    owner = os.getpid() if pid is None else pid
    return SLOT_UID_BASE + ((owner & 0x3F_FFFF) << 6) + (slot % MAX_SLOTS)


def interpreter() -> tuple[str, str]:
    """(real path of the base interpreter, its real prefix): never a venv, never the repo."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def job_config(limits: Mapping[str, int], *, already_counted: int, **extra: int) -> str:
    """`key=int,...` for `sandbox_boot`; NPROC is raised by what the kernel already counts."""
    cfg = dict(limits, **extra)
    cfg["max_processes"] = limits["max_processes"] + already_counted
    return ",".join(f"{key}={int(value)}" for key, value in sorted(cfg.items()))


def count_tasks(uid: int) -> int:
    """Threads of live processes with real uid `uid`: what RLIMIT_NPROC counts for it."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, ValueError, KeyError):
            continue
    return count


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def filesystem_args(python: str, prefix: str, tmpfs_bytes: int) -> list[str]:
    """Mounts: /usr and the interpreter read-only, a private tmpfs, nothing else of the host."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ROOT_LINKS:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    roots: list[str] = []
    for root in sorted({prefix, os.path.dirname(python)}, key=len):
        if not _under(root, "/usr") and not any(_under(root, r) for r in roots):
            roots.append(root)
    made: set[str] = set()
    for root in roots:
        for parent in reversed(PurePosixPath(root).parents):
            name = str(parent)
            if name != "/" and name not in made:
                made.add(name)
                args += ["--perms", "0755", "--dir", name]
        args += ["--ro-bind", root, root]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(tmpfs_bytes), "--tmpfs", "/tmp"]
    return args


def setpriv_args(uid: int) -> list[str]:
    """Drop to `uid` with no groups, no capabilities (bounding set included), no new privs."""
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def bwrap_argv(
    *,
    python: str,
    prefix: str,
    boot: str,
    control_fd: int,
    seccomp_fd: int,
    keyctl_nr: int,
    as_root: bool,
    tmpfs_bytes: int,
) -> list[str]:
    """The bubblewrap command for one slot's zygote.

    The zygote keeps just the capabilities it needs to give each sample its namespaces and
    uid (the sample drops all of them before its first line runs).
    """
    argv = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent"]
    argv += ["--new-session"]
    if as_root:
        argv += ["--cap-drop", "ALL"]
        caps = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
    else:
        argv += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        argv += ["--disable-userns"]
        caps = ("CAP_SYS_ADMIN", "CAP_SETPCAP")
    for cap in caps:
        argv += ["--cap-add", cap]
    argv += filesystem_args(python, prefix, tmpfs_bytes)
    argv += ["--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", "/tmp", "--"]
    cfg = f"control_fd={control_fd},seccomp_fd={seccomp_fd},keyctl_nr={keyctl_nr}"
    return [*argv, python, *PYTHON_FLAGS, "-c", boot, "zygote", cfg]


def rlimit_only_argv(*, python: str, boot: str, config: str, as_root: bool, uid: int) -> list[str]:
    """The weaker command: same limits and uid drop, but no namespaces and no private root."""
    prefix = setpriv_args(uid) if as_root else []
    return [*prefix, python, *PYTHON_FLAGS, "-c", boot, "main", config]


def world_accessible(path: str) -> bool:
    """Whether a uid with no special rights can reach and execute `path` (rlimit-only as root)."""
    path = os.path.realpath(path)
    for parent in PurePosixPath(path).parents:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o001)
