"""`synth sandbox run FILE`: run one Python file in the code sandbox, print its verdict as JSON.

The same `Sandbox.run` the `verified_code` and `execution_traces` assets use, so what
this prints is what a pipeline run would have recorded for that file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synth_lib.sandbox.host import MODES, Sandbox, SandboxLimits, SandboxUnavailable

EXIT_NOT_PASSED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 1, 2, 3


def _run(args: argparse.Namespace) -> int:
    try:
        code = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    limits = SandboxLimits(timeout_s=args.timeout, memory_mb=args.memory_mb)
    try:
        sandbox = Sandbox(limits, mode=args.mode, concurrency=1)
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    result = sandbox.run(code)
    print(json.dumps(result.to_dict(max_output_chars=args.max_output_chars), indent=2))
    return 0 if result.passed else EXIT_NOT_PASSED


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sandbox run` to the `synth` command line."""
    sandbox = subparsers.add_parser("sandbox", help="run untrusted Python in the code sandbox")
    actions = sandbox.add_subparsers(dest="sandbox_command", required=True)
    run = actions.add_parser(
        "run",
        help="run FILE in the sandbox; print the verdict as JSON "
        "(exit 0 passed, 1 not passed, 2 unreadable file, 3 no sandbox available)",
    )
    run.add_argument("file", help="Python source file to run")
    run.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds (10)")
    run.add_argument("--memory-mb", type=int, default=512, help="address-space limit (512)")
    run.add_argument(
        "--mode",
        choices=MODES,
        default="bwrap",
        help="bwrap (default) or the weaker rlimit_only, named in the verdict",
    )
    run.add_argument(
        "--max-output-chars",
        type=int,
        default=2000,
        help="stdout/stderr characters printed per stream (2000)",
    )
    run.set_defaults(handler=_run)
