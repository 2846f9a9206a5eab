"""`synth rollback`: remove everything descending from a seed, a model revision or a template.

    synth rollback --seed ID --reason TEXT [--dry-run]
    synth rollback --model NAME@REVISION --reason TEXT [--dry-run] [--materialize]
    synth rollback --template NAME@HASH --reason TEXT
    synth rollback --lift RB_ID --reason TEXT
    synth rollback --list

A dry run prints, per asset, the descendant rows and the shards they live in, and records
nothing. A real one appends an entry to the ledger; the assets that read it (the mix,
curation, the export) drop the rows when next materialized: `--materialize` does that now
through the `dagster` command line, otherwise the command to run is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from synth_lib.provenance.rollback import (
    Target,
    active_entries,
    lift,
    plan,
    record,
    rematerialization,
)


def _home() -> Path:
    return Path(os.environ.get("SYNTH_HOME", Path.cwd() / ".synth"))


def materialize_commands(plan: dict[str, list[str] | None]) -> list[list[str]]:
    """`dagster` calls that re-materialize the readers: only the affected seed shards of a
    partitioned one, the whole of the others (in graph order)."""
    dagster = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize"]
    dagster += ["-m", "synth_jobs.definitions"]
    commands = []
    for asset, shards in plan.items():
        if shards is None:
            commands.append([*dagster, "--select", asset])
        else:
            commands += [[*dagster, "--select", asset, "--partition", s] for s in shards]
    return commands


def _target(args: argparse.Namespace) -> Target:
    for kind in ("seed", "model", "template"):
        value = getattr(args, kind)
        if value is not None:
            return Target.parse(kind, value)
    raise ValueError("name one of --seed, --model, --template (or --lift / --list)")


def _run(args: argparse.Namespace) -> int:
    home = Path(args.home)
    data_dir = home / "data"
    try:
        if args.list:
            print(json.dumps([e.summary() for e in active_entries(home)], indent=2))
            return 0
        if not args.reason.strip():
            raise ValueError("--reason is required: say why, for the audit trail")
        if args.lift:
            print(json.dumps(lift(home, args.lift, args.reason).summary(), indent=2))
            return 0
        target = _target(args)
        if args.dry_run:
            affected, removed = plan(target, data_dir)
            report = {"target": target.label(), "descendant_rows": len(removed)}
            report |= {"assets": affected, "rematerialize": rematerialization(affected)}
            print(json.dumps(report, indent=2))
            return 0
        entry = record(home, target, args.reason, data_dir)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    commands = materialize_commands(rematerialization(entry.affected))
    shown = [" ".join(c) for c in commands]
    print(json.dumps({**entry.summary(), "rematerialize": shown}, indent=2))
    for command in commands if args.materialize else []:
        code = subprocess.run(command, check=False).returncode
        if code:
            return code
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "rollback",
        help="remove every descendant of a seed, model revision or template",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seed", help="a seed row id")
    what.add_argument("--model", help="NAME@REVISION as in the rows' generator")
    what.add_argument("--template", help="NAME@HASH (a hash prefix is enough)")
    what.add_argument("--lift", metavar="RB_ID", help="lift an active rollback")
    what.add_argument("--list", action="store_true", help="print the active rollbacks")
    parser.add_argument("--reason", default="", help="why (required except with --list)")
    parser.add_argument("--dry-run", action="store_true", help="report, record nothing")
    parser.add_argument("--materialize", action="store_true", help="re-materialize the readers now")
    parser.add_argument(
        "--home", default=str(_home()), help="SYNTH_HOME (default: $SYNTH_HOME or ./.synth)"
    )
    parser.set_defaults(handler=_run)
