"""The seccomp policy every sample runs under, compiled once on the host to a BPF program.

Built with libseccomp through `pyseccomp` (a ctypes binding of the library's own Python API),
not hand-written BPF: libseccomp knows each architecture's syscall numbers, adds the
architecture check (a call from another ABI, e.g. 32-bit `int 0x80` on x86_64, kills the
process) and gets argument comparisons on 64-bit values right. bubblewrap's `--seccomp`
cannot be used: it would filter the zygote too, and the zygote needs `unshare` and `mount`
to give each sample its namespaces. So the host hands the compiled program to the zygote
(or the rlimit-only boot), and the sample process installs it on itself after dropping its
privileges and before its first line runs; it is inherited by everything the sample forks.

The policy is a deny-list with EPERM (a denied call fails, the sample goes on and gets its
honest verdict); everything not listed is allowed. `POLICY` holds each group with its reason.
"""

from __future__ import annotations

import errno
import tempfile
from functools import cache

import pyseccomp

CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
AF_NETLINK, AF_PACKET = 16, 17

POLICY: dict[str, tuple[str, tuple[str, ...]]] = {
    "keyrings": (
        "kernel keyrings are shared per uid and per session, outside every namespace",
        ("keyctl", "add_key", "request_key"),
    ),
    "namespaces": (
        "new namespaces (user ones above all) open kernel code to unprivileged mounts",
        ("unshare", "setns"),
    ),
    "mounts": (
        "no filesystem changes beyond the sample's own tmpfs",
        (
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "name_to_handle_at",
            "open_by_handle_at",
            "quotactl",
            "quotactl_fd",
        ),
    ),
    "other processes": (
        "no reading or writing another process's memory or descriptors",
        ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"),
    ),
    "kernel programs": (
        "eBPF, perf, userfaultfd and io_uring are large attack surfaces (io_uring also "
        "performs I/O that seccomp never sees)",
        (
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
        ),
    ),
    "system administration": (
        "modules, kexec, reboot, swap, clocks, accounting, kernel log, host names, ports",
        (
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "syslog",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "sethostname",
            "setdomainname",
            "iopl",
            "ioperm",
            "vhangup",
            "lookup_dcookie",
            "uselib",
            "ustat",
            "sysfs",
            "fanotify_init",
            "nfsservctl",
            "personality",
        ),
    ),
}
CLONE_REASON = "clone with any CLONE_NEW* flag: a namespace by another door"
CLONE3_REASON = (
    "clone3 passes its flags in memory, which seccomp cannot read: ENOSYS, so the C library "
    "falls back to clone, whose flags are checked"
)
SOCKET_REASON = "netlink (kernel events, routing, audit) and packet sockets: none is needed"


def _add(rules: pyseccomp.SyscallFilter, action: int, name: str, *args: pyseccomp.Arg) -> bool:
    """Add one rule; False if this kernel/libseccomp does not know the syscall (nothing to deny)."""
    try:
        rules.add_rule(action, name, *args)
    except (RuntimeError, ValueError, OSError):
        return False
    return True


def build_filter() -> pyseccomp.SyscallFilter:
    """The policy as a libseccomp filter: allow by default, EPERM for the listed calls."""
    deny = pyseccomp.ERRNO(errno.EPERM)
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for _reason, names in POLICY.values():
        for name in names:
            _add(rules, deny, name)
    for flag in CLONE_NAMESPACE_FLAGS.values():
        _add(rules, deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    _add(rules, pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for family in (AF_NETLINK, AF_PACKET):
        _add(rules, deny, "socket", pyseccomp.Arg(0, pyseccomp.EQ, family))
    return rules


@cache
def compiled_policy() -> bytes:
    """The filter as raw BPF (struct sock_filter[]), ready for PR_SET_SECCOMP."""
    with tempfile.TemporaryFile() as handle:
        build_filter().export_bpf(handle)
        handle.seek(0)
        return handle.read()


def syscall_number(name: str) -> int:
    """The native number of syscall `name` (negative when this architecture has none)."""
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def describe() -> list[dict[str, object]]:
    """The policy as rows (group, reason, calls): for notes, docs and the CLI."""
    rows: list[dict[str, object]] = [
        {"group": group, "reason": reason, "calls": list(names)}
        for group, (reason, names) in POLICY.items()
    ]
    rows.append({"group": "clone", "reason": CLONE_REASON, "calls": sorted(CLONE_NAMESPACE_FLAGS)})
    rows.append({"group": "clone3", "reason": CLONE3_REASON, "calls": ["clone3"]})
    rows.append({"group": "sockets", "reason": SOCKET_REASON, "calls": ["AF_NETLINK", "AF_PACKET"]})
    return rows
