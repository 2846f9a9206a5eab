"""The sandbox attack suite: every attack contained, each scored on its own, host unharmed.

All attacks run as ONE concurrent batch together with a correct and a wrong sample, so
the suite also proves that a hostile neighbour does not change anyone else's verdict.
Without bwrap the suite skips, unless SYNTH_REQUIRE_SANDBOX=1 (set it in CI) makes the
missing sandbox a failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from synth_lib.commands.sandbox import register
from synth_lib.sandbox import host as sandbox_mod
from synth_lib.sandbox.host import Sandbox, SandboxLimits, SandboxResult, SandboxUnavailable

SECRET = f"s3cret-{uuid.uuid4().hex}"
MARKER = f"detached-{uuid.uuid4().hex}"
LIMITS = SandboxLimits(timeout_s=3.0, memory_mb=256, max_processes=8, tmpfs_mb=32)


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
        "detached_child": "import os, sys\nif os.fork() == 0:\n    os.setsid()\n"
        "    if os.fork() == 0:\n        os.execv(sys.executable, [sys.executable, '-c',"
        f" 'import time; time.sleep(60)', {MARKER!r}])\n    os._exit(0)\nprint('parent left')",
        "stdin": "data = input()",
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
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTH_PLANTED_SECRET", SECRET)
        results = sandbox.run_many(list(attacks.values()))
    fds_after = _open_fds()
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
    assert "parent left" in result.stdout
    assert _processes_with(MARKER) == []


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
    results = weak.run_many(["print(6 * 7)", "assert False, 'no'"])
    assert [r.mode for r in results] == ["rlimit_only", "rlimit_only"]
    assert [r.verdict for r in results] == ["passed", "failed"]
    assert results[0].stdout == "42\n"


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
