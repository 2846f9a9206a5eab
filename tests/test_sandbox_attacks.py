"""The sandbox attack suite: every attack contained, each scored on its own, host unharmed.

All attacks run as ONE concurrent batch together with a correct and a wrong sample, so
the suite also proves that a hostile neighbour does not change anyone else's verdict.
Without bwrap the suite skips, unless SYNTH_REQUIRE_SANDBOX=1 (set it in CI) makes the
missing sandbox a failure.
"""

from __future__ import annotations

import argparse
import ast
import errno
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from synth_lib.commands.sandbox import register
from synth_lib.sandbox import host as sandbox_mod
from synth_lib.sandbox.argv import NOBODY, slot_uid
from synth_lib.sandbox.host import Sandbox, SandboxLimits, SandboxResult, SandboxUnavailable
from synth_lib.sandbox.seccomp import syscall_number

SECRET = f"s3cret-{uuid.uuid4().hex}"
MARKER = f"detached-{uuid.uuid4().hex}"
LIMITS = SandboxLimits(
    timeout_s=3.0, memory_mb=256, max_processes=8, tmpfs_mb=32, file_size_mb=8, max_open_files=64
)
DEADLINE_MARGIN_S = 1.5
# Denied by the seccomp filter: each call's errno is printed (1 = EPERM); threads and a
# subprocess (clone3 -> ENOSYS -> clone fallback) must still work.
SYSCALLS = f"""\
import ctypes, socket, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(result):
    return ctypes.get_errno() if result == -1 else 0
def call(nr, *args):
    return errno_of(libc.syscall(nr, *args))
seen = {{}}
seen["unshare_user"] = errno_of(libc.unshare(0x10000000))
seen["unshare_user_mount"] = errno_of(libc.unshare(0x10000000 | 0x00020000))
seen["mount"] = errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
seen["keyctl_search"] = call({syscall_number("keyctl")}, 10, -3, b"user", b"k", 0)
seen["add_key"] = call({syscall_number("add_key")}, b"user", b"k", b"v", 1, -4)
seen["request_key"] = call({syscall_number("request_key")}, b"user", b"k", None, 0)
seen["ptrace"] = errno_of(libc.ptrace(0, 0, None, None))
seen["bpf"] = call({syscall_number("bpf")}, 0, None, 0)
seen["perf_event_open"] = call({syscall_number("perf_event_open")}, None, 0, -1, -1, 0)
seen["process_vm_readv"] = call({syscall_number("process_vm_readv")}, 1, None, 0, None, 0, 0)
seen["clone_newuser"] = call({syscall_number("clone")}, 0x10000000 | 17, None, None, None, None)
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15)
    seen["netlink"] = 0
except OSError as exc:
    seen["netlink"] = exc.errno
box = []
thread = threading.Thread(target=lambda: box.append("thread ran"))
thread.start()
thread.join()
child = subprocess.run([sys.executable, "-c", "print('child ran')"], capture_output=True)
print(seen)
print(box[0], child.stdout.decode().strip())
"""
# Forge a "passed" status line on every descriptor the sample holds, then exit 1.
FORGED_STATUS = """\
import os
line = repr({"pid": os.getpid(), "main": True, "verdict": "passed", "exc_type": None,
             "reason": ""}) + "\\n"
for fd in range(3, 64):
    try:
        os.write(fd, line.encode())
    except OSError:
        pass
os._exit(1)
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("SYNTH_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"sandbox required but unavailable: {reason}")
    pytest.skip(f"bubblewrap sandbox unavailable here: {reason}")


def _open_fds() -> int:
    gc.collect()  # objects from earlier tests in this worker may close fds at any time
    return len(os.listdir("/proc/self/fd"))


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _attacks(port: int, victim: Path) -> dict[str, str]:
    return {
        "correct": "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('ok')",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "infinite_loop": "while True:\n    pass",
        "alloc_10gb": "block = bytearray(10 * 1024**3)",
        "stdout_1gb": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n"
        "    sys.stdout.write(chunk)",
        "fill_disk": "i = 0\nwhile True:\n    with open(f'/tmp/fill{i}', 'wb') as f:\n"
        "        f.write(b'x' * (4 << 20))\n    i += 1",
        "connect_local": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)",
        "environ": "import os\nprint(dict(os.environ))\nfor pid in os.listdir('/proc'):\n"
        "    try:\n        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError:\n        pass",
        "unlink_host": f"import posix\nposix.unlink({str(victim)!r})",
        # the grandchild proves it is running (it writes to a pipe) before its parent leaves
        "detached_child": "import os, sys\nr, w = os.pipe()\nif os.fork() == 0:\n"
        "    os.setsid()\n    if os.fork() == 0:\n        os.set_inheritable(w, True)\n"
        "        os.execv(sys.executable, [sys.executable, '-c', 'import os, sys, time; "
        'os.write(int(sys.argv[1]), b"up"); time.sleep(60)\', str(w),'
        f" {MARKER!r}])\n    os._exit(0)\nos.close(w)\n"
        "print('grandchild', os.read(r, 2).decode())\nprint('parent left')",
        "stdin": "data = input()",
        "uid": "import os\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())",
        "open_files": "files = []\nwhile True:\n    files.append(open('/dev/null'))",
        "file_size": "with open('/tmp/big', 'wb') as f:\n    f.write(b'x' * (9 << 20))",
        "stderr_2mb": "import sys\nsys.stderr.write('e' * (2 << 20))",
        "closed_fds_sleep": "import os, time\nos.closerange(0, 1024)\ntime.sleep(60)",
        "closed_fds_double_fork": "import os, time\nos.closerange(0, 1024)\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
        "    os._exit(0)\ntime.sleep(60)",
        "syscalls": SYSCALLS,
        "forged_status": FORGED_STATUS,
        "early_exit_0": "import os\nprint('bye', flush=True)\nos._exit(0)",
        "wrong": "def add(a, b):\n    return a - b\nassert add(2, 3) == 5, 'add is wrong'",
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    try:
        sandbox = Sandbox(LIMITS, concurrency=2)
    except SandboxUnavailable as exc:
        _unavailable(str(exc))
    probe = sandbox.probe()
    if probe.verdict != "passed":
        _unavailable(f"{probe.verdict}: {probe.reason}")
    victim = tmp_path_factory.mktemp("host") / "victim.txt"
    victim.write_text("precious")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    attacks = _attacks(listener.getsockname()[1], victim)
    fds_before = _open_fds()
    zygotes_before = [id(z) for z in sandbox._zygotes]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTH_PLANTED_SECRET", SECRET)
        results = sandbox.run_many(list(attacks.values()))
    fds_after = _open_fds()
    zygotes_after = [id(z) for z in sandbox._zygotes]
    try:
        intruder = listener.accept()
    except BlockingIOError:
        intruder = None
    listener.close()
    return {
        "results": dict(zip(attacks, results, strict=True)),
        "victim": victim,
        "intruder": intruder,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "fork_servers_restarted": zygotes_before != zygotes_after,
        "sandbox": sandbox,
    }


def _get(batch: dict, name: str) -> SandboxResult:
    result = batch["results"][name]
    assert result.mode == "bwrap"
    assert result.verdict != "sandbox_error", result
    return result


def test_fork_bomb_hits_the_process_limit(batch: dict) -> None:
    result = _get(batch, "fork_bomb")
    assert result.verdict == "resource_limit"
    assert result.exc_type == "BlockingIOError"


def test_infinite_loop_times_out(batch: dict) -> None:
    result = _get(batch, "infinite_loop")
    assert result.verdict == "timeout"
    assert result.duration_s < LIMITS.timeout_s + 2


def test_huge_allocation_hits_the_memory_limit(batch: dict) -> None:
    result = _get(batch, "alloc_10gb")
    assert (result.verdict, result.exc_type) == ("resource_limit", "MemoryError")


def test_gigabyte_of_stdout_is_cut_at_the_cap(batch: dict) -> None:
    result = _get(batch, "stdout_1gb")
    assert result.verdict == "resource_limit"
    assert "stdout exceeded" in result.reason
    assert result.stdout_truncated
    assert len(result.stdout) <= LIMITS.output_bytes


def test_filling_the_disk_stops_at_the_private_tmpfs(batch: dict) -> None:
    result = _get(batch, "fill_disk")
    assert result.verdict == "resource_limit"
    assert "No space left" in result.reason


def test_no_network_reaches_the_host(batch: dict) -> None:
    result = _get(batch, "connect_local")
    assert result.verdict == "error"
    assert result.exc_type in {"ConnectionRefusedError", "OSError", "TimeoutError"}
    assert batch["intruder"] is None


def test_environment_holds_no_secret(batch: dict) -> None:
    result = _get(batch, "environ")
    assert result.verdict == "passed"
    assert "PATH" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    assert "SYNTH_PLANTED_SECRET" not in result.stdout


def test_host_file_survives_unlink(batch: dict) -> None:
    result = _get(batch, "unlink_host")
    assert (result.verdict, result.exc_type) == ("error", "FileNotFoundError")
    assert batch["victim"].read_text() == "precious"


def test_detached_child_does_not_outlive_the_run(batch: dict) -> None:
    result = _get(batch, "detached_child")
    assert result.verdict == "passed"
    assert "grandchild up" in result.stdout  # it had started running
    assert "parent left" in result.stdout
    assert _processes_with(MARKER) == []


def test_samples_run_as_the_slot_uid_with_no_groups(batch: dict) -> None:
    result = _get(batch, "uid")
    assert result.verdict == "passed"
    uid, euid, gid, groups = result.stdout.split(maxsplit=3)
    expected = {slot_uid(0), slot_uid(1)} if os.geteuid() == 0 else {NOBODY}
    assert int(uid) == int(euid) == int(gid) and int(uid) in expected
    assert groups.strip() == "[]"


def test_open_files_stop_at_the_limit(batch: dict) -> None:
    result = _get(batch, "open_files")
    assert (result.verdict, result.exc_type) == ("resource_limit", "OSError")
    assert "Too many open files" in result.reason


def test_one_file_cannot_exceed_the_file_size_limit(batch: dict) -> None:
    result = _get(batch, "file_size")
    assert result.verdict == "resource_limit"
    assert "File too large" in result.reason


def test_stderr_is_cut_at_the_cap(batch: dict) -> None:
    result = _get(batch, "stderr_2mb")
    assert result.verdict == "resource_limit"
    assert "stderr exceeded" in result.reason
    assert result.stderr_truncated and len(result.stderr) <= LIMITS.output_bytes


@pytest.mark.parametrize("name", ["closed_fds_sleep", "closed_fds_double_fork"])
def test_deadline_holds_when_the_sample_closes_its_descriptors(batch: dict, name: str) -> None:
    result = _get(batch, name)
    assert result.verdict == "timeout", result
    assert result.attempts == 1  # no retry...
    assert not batch["fork_servers_restarted"]  # ...and no fork server was replaced
    assert result.duration_s < LIMITS.timeout_s + DEADLINE_MARGIN_S


def test_seccomp_denies_namespaces_keyrings_tracing_and_netlink(batch: dict) -> None:
    result = _get(batch, "syscalls")
    assert result.verdict == "passed", result
    seen_line, ran_line = result.stdout.strip().splitlines()
    seen = ast.literal_eval(seen_line)
    assert seen == dict.fromkeys(seen, errno.EPERM), seen
    assert len(seen) == 12
    assert ran_line == "thread ran child ran"


def test_a_forged_status_line_does_not_pass(batch: dict) -> None:
    result = _get(batch, "forged_status")
    assert result.verdict == "failed"
    assert "exit status is 1" in result.reason


def test_exit_0_before_the_final_status_is_a_failure(batch: dict) -> None:
    result = _get(batch, "early_exit_0")
    assert (result.verdict, result.stdout) == ("failed", "bye\n")
    assert "early exit" in result.reason


def test_stdin_is_immediately_at_eof(batch: dict) -> None:
    result = _get(batch, "stdin")
    assert (result.verdict, result.exc_type) == ("error", "EOFError")
    assert result.duration_s < LIMITS.timeout_s


def test_neighbours_in_the_batch_are_scored_correctly(batch: dict) -> None:
    correct, wrong = _get(batch, "correct"), _get(batch, "wrong")
    assert correct.verdict == "passed"
    assert correct.stdout == "ok\n"
    assert (wrong.verdict, wrong.exc_type, wrong.reason) == (
        "failed",
        "AssertionError",
        "add is wrong",
    )


def test_host_process_is_unharmed(batch: dict) -> None:
    assert batch["fds_after"] == batch["fds_before"]
    again = batch["sandbox"].run("print(sum(range(10)))")
    assert (again.verdict, again.stdout) == ("passed", "45\n")


def test_broken_sandbox_is_retried_and_never_scored_as_wrong_code(batch: dict) -> None:
    broken = Sandbox(LIMITS, retries=2, python="/nonexistent/python3")
    result = broken.run("print('never runs')")
    assert result.verdict == "sandbox_error"
    assert result.attempts == 3


def test_refuses_without_bwrap_unless_rlimit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        sandbox_mod.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    with pytest.raises(SandboxUnavailable, match="rlimit_only"):
        Sandbox(LIMITS)
    python = _interpreter_for_rlimit_only()
    weak = Sandbox(LIMITS, mode="rlimit_only", python=python)
    closed_fds = "import os, time\nos.closerange(0, 1024)\ntime.sleep(60)"
    results = weak.run_many(["print(6 * 7)", "assert False, 'no'", closed_fds])
    assert [r.mode for r in results] == ["rlimit_only"] * 3
    assert [r.verdict for r in results] == ["passed", "failed", "timeout"]
    assert results[0].stdout == "42\n"
    assert results[2].duration_s < LIMITS.timeout_s + DEADLINE_MARGIN_S


def _interpreter_for_rlimit_only() -> str | None:
    """rlimit_only as root drops to an unprivileged uid: it needs a world-reachable python."""
    if os.geteuid() != 0:
        return None
    from synth_lib.sandbox.argv import interpreter, world_accessible

    for candidate in (interpreter()[0], "/usr/bin/python3"):
        if os.path.exists(candidate) and world_accessible(candidate):
            return candidate
    pytest.skip("running as root and no world-accessible python for rlimit_only")


def test_cli_prints_the_verdict_as_json(batch: dict, tmp_path: Path, capsys) -> None:
    script = tmp_path / "sample.py"
    script.write_text("print('x' * 5000)\nraise KeyError('k')\n")
    parser = argparse.ArgumentParser(prog="synth")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["sandbox", "run", str(script), "--timeout", "5", "--max-output-chars", "100"]
    )
    exit_code = args.handler(args)
    verdict = json.loads(capsys.readouterr().out)
    assert exit_code == 1
    assert (verdict["verdict"], verdict["exc_type"], verdict["mode"]) == (
        "error",
        "KeyError",
        "bwrap",
    )
    assert verdict["stdout_truncated"] and verdict["stdout"] == "x" * 100


# Run in a child interpreter: it joins its own session keyring holding a secret (as
# pam_keyinit or systemd's KeyringMode=private would give the host), then runs two samples
# in the same slot: one that hunts for the secret and plants keys, one that looks for them.
KEYRING_HOST = """\
import ctypes, json, sys
from synth_lib.sandbox.host import Sandbox, SandboxLimits
from synth_lib.sandbox.seccomp import syscall_number
KEYCTL, ADD_KEY = syscall_number("keyctl"), syscall_number("add_key")
SESSION, USER, JOIN, UPDATE, SEARCH, READ = -3, -4, 1, 2, 10, 11
libc = ctypes.CDLL(None, use_errno=True)
secret = sys.argv[1].encode()
if libc.syscall(KEYCTL, JOIN, b"synth-test-host") < 0:
    print(json.dumps({"skip": f"keyctl unavailable here (errno {ctypes.get_errno()})"}))
    sys.exit()
key = libc.syscall(ADD_KEY, b"user", b"synth-secret", secret, len(secret), SESSION)
prelude = "import ctypes\\nlibc = ctypes.CDLL(None, use_errno=True)\\n"
prelude += f"K, A = {KEYCTL}, {ADD_KEY}\\n"
hunt = prelude + (
    "found = libc.syscall(K, 10, -3, b'user', b'synth-secret', 0)\\n"
    "buf = ctypes.create_string_buffer(256)\\n"
    "size = libc.syscall(K, 11, found, buf, 256)\\n"
    "changed = libc.syscall(K, 2, found, b'overwritten', 11)\\n"
    "planted = [libc.syscall(A, b'user', b'synth-planted', b'x', 1, ring) for ring in (-3, -4)]\\n"
    "print(found, buf.value.decode(), changed, planted)\\n"
)
look = prelude + (
    "print([libc.syscall(K, 10, ring, b'user', b'synth-planted', 0) for ring in (-3, -4)])\\n"
)
with Sandbox(SandboxLimits(timeout_s=5.0), concurrency=1) as box:
    first, second = box.run(hunt), box.run(look)
buf = ctypes.create_string_buffer(256)
libc.syscall(KEYCTL, READ, key, buf, 256)
host_sees = [
    libc.syscall(KEYCTL, SEARCH, ring, b"user", b"synth-planted", 0) for ring in (SESSION, USER)
]
print(json.dumps({"first": [first.verdict, first.stdout], "second": [second.verdict, second.stdout],
                  "host_secret": buf.value.decode(), "host_sees_planted": host_sees}))
"""


def test_samples_cannot_reach_the_hosts_keyrings_or_each_others(batch: dict) -> None:
    secret = f"keyring-{uuid.uuid4().hex}"
    done = subprocess.run(
        [sys.executable, "-c", KEYRING_HOST, secret],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(report["skip"])
    assert report["first"] == ["passed", "-1  -1 [-1, -1]\n"]  # found nothing, changed nothing
    assert report["second"] == ["passed", "[-1, -1]\n"]
    assert report["host_secret"] == secret
    assert report["host_sees_planted"] == [-1, -1]
