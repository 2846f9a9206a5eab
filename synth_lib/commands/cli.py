"""The `synth` console script: lineage lookups and the per-feature sub-commands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

FEATURE_COMMANDS: tuple[str, ...] = (
    "sandbox",
    "verify",
    "dedup",
    "decontam",
    "rollback",
    "watermark",
)


def _default_data_dir() -> Path:
    return Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth")) / "data"


def _lineage(args: argparse.Namespace) -> int:
    from synth_lib.provenance.ancestry import ancestry, load_index, parquet_files
    from synth_lib.provenance.rollback import active_entries, removed_by_rows

    root = Path(args.data_dir)
    files = parquet_files(root)
    if not files:
        print(f"error: no materialized assets under {root} (run `make run` first)", file=sys.stderr)
        return 2
    index = load_index(files)
    removals = removed_by_rows(active_entries(root.parent), list(index.values()))
    try:
        hops = ancestry(args.row_id, index, removals)
    except KeyError as exc:
        print(f"error: {exc.args[0]} (searched {len(files)} files under {root})", file=sys.stderr)
        return 1
    print(json.dumps(hops, indent=2, default=str))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for all sub-commands, or for `command` only when it names a feature one:
    each feature module imports its own libraries, so a run pays only for the one it uses."""
    parser = argparse.ArgumentParser(prog="synth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    lineage = sub.add_parser("lineage", help="print a row's ancestry back to its seeds as JSON")
    lineage.add_argument("row_id")
    lineage.add_argument(
        "--data-dir",
        default=str(_default_data_dir()),
        help="folder of materialized assets (default: $SYNTH_HOME/data)",
    )
    lineage.set_defaults(handler=_lineage)
    for name in [command] if command in FEATURE_COMMANDS else FEATURE_COMMANDS:
        importlib.import_module(f"synth_lib.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
