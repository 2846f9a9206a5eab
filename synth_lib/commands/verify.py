"""`synth verify code FILE`: one model response through the `verified_code` checks, as JSON.

FILE holds one response in the format the stage parses (a fenced solution block and a
fenced block of tests, or one block split before its first test). The checks are exactly
the asset's (`verify_responses`): static gates, ruff, the verifier's gates, the trusted
runner in the sandbox, the stub (mutation) check and, with `--reference`, the differential
check against that standard-library function on generated inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synth_lib.code.execution_traces import FUNCTIONS
from synth_lib.code.verified_code import verify_responses
from synth_lib.code.verifier import reference_for
from synth_lib.sandbox.host import MODES, Sandbox, SandboxLimits, SandboxUnavailable

EXIT_REJECTED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 1, 2, 3


def _code(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    reference = None
    if args.reference:
        function = args.reference.replace(":", ".")
        reference = reference_for(function, only_same_name=False)
        if reference is None:
            known = ", ".join(fn.name.replace(".", ":", 1) for fn in FUNCTIONS[:6])
            print(
                f"error: no input generator for {args.reference} (known: {known}, ...)",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    problem = args.problem or (f"Write a function `{args.function}(...)`." if args.function else "")
    limits = SandboxLimits(timeout_s=args.timeout)
    try:
        sandbox = Sandbox(limits, mode=args.mode, concurrency=1)
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    with sandbox:
        check = verify_responses([text], sandbox, problem=problem, reference=reference)[0]
    report = {
        "accepted": check.accepted,
        "verdict": check.outcome,
        "reason": check.reason,
        "sandbox_mode": sandbox.mode,
        "checks": [
            {"name": v.name, "passed": v.passed, "reason": v.reason} for v in check.verdicts
        ],
    }
    print(json.dumps(report, indent=2))
    return 0 if check.accepted else EXIT_REJECTED


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `verify code` to the `synth` command line."""
    verify = subparsers.add_parser("verify", help="run the pipeline's verifiers on one input")
    kinds = verify.add_subparsers(dest="verify_command", required=True)
    code = kinds.add_parser(
        "code",
        help="check one model response (solution + tests) as verified_code does; print JSON "
        "(exit 0 accepted, 1 rejected, 2 bad input, 3 no sandbox available)",
    )
    code.add_argument("file", help="file holding one model response with fenced code blocks")
    code.add_argument(
        "--reference",
        metavar="MODULE:FUNCTION",
        help="stdlib function the solution must agree with on generated inputs "
        "(e.g. textwrap:shorten); without it every check but the differential one runs",
    )
    code.add_argument("--problem", default="", help="problem text (names the function asked for)")
    code.add_argument("--function", default="", help="name of the function asked for")
    code.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds (10)")
    code.add_argument("--mode", choices=MODES, default="bwrap", help="sandbox mode (bwrap)")
    code.set_defaults(handler=_code)
