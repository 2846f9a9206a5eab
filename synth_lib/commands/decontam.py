"""`synth decontam IN OUT --benchmark PATH ...`: flag rows that overlap benchmark items.

The output keeps every input row and column and adds `contaminated_by` (benchmark/item
id, null when clean) and `contamination_reason`. A benchmark is a JSONL/Parquet file
(text column guessed: question, prompt, problem, text, ...) or a Hugging Face dataset
name `NAME[:SPLIT]` (needs the `datasets` library and network or its cache).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synth_lib.commands.dedup import EXIT_BAD_INPUT, InputError, read_table, write_table
from synth_lib.curation.decontam import (
    PRESETS,
    BenchmarkIndex,
    BenchmarkItem,
    DecontamConfig,
    file_items,
    hf_items,
    humaneval_items,
)


def load_benchmark(spec: str) -> list[BenchmarkItem]:
    """`[LABEL=]PATH` if the path exists (or ends in .jsonl/.parquet), else `NAME[:SPLIT]`."""
    label, _, target = spec.rpartition("=")
    path = Path(target)
    if path.exists() or path.suffix.lower() in {".jsonl", ".ndjson", ".json", ".parquet"}:
        return file_items(path, name=label or None)
    name, _, split = target.partition(":")
    return hf_items(name, split or "test")


def _run(args: argparse.Namespace) -> int:
    if not args.benchmark and not args.humaneval:
        print("error: give at least one --benchmark PATH or --humaneval", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        table = read_table(Path(args.input), args.text_column)
        items = humaneval_items() if args.humaneval else []
        for spec in args.benchmark:
            items += load_benchmark(spec)
        overrides = {} if args.containment is None else {"containment": args.containment}
        if args.ngram:
            overrides |= {"ngram": args.ngram, "min_overlap": 1}
        config = DecontamConfig.preset(args.preset, **overrides)
        index = BenchmarkIndex(items, config)
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    matches = index.scan(table.texts)
    added = {
        "contaminated_by": [m.label if m else None for m in matches],
        "contamination_reason": [m.reason if m else None for m in matches],
    }
    write_table(table, Path(args.output), added)
    print(json.dumps({"rows": len(matches), "flagged_by_benchmark": index.counts(matches)}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = DecontamConfig()
    parser = subparsers.add_parser(
        "decontam",
        help="flag rows that overlap benchmark items (n-gram overlap + bigram containment)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="input .jsonl or .parquet with a text column")
    parser.add_argument("output", metavar="OUT", help="output .jsonl or .parquet")
    parser.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="PATH",
        help="benchmark [LABEL=]FILE (.jsonl/.parquet) or HF dataset NAME[:SPLIT]; repeatable",
    )
    parser.add_argument("--humaneval", action="store_true", help="add HumanEval (offline)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="gpt3",
        help="n-gram overlap preset: gpt3 (13-grams), llama3 (8-grams, 4 shared)",
    )
    parser.add_argument(
        "--ngram", type=int, help="n-gram size, any shared n-gram flags (overrides --preset)"
    )
    parser.add_argument(
        "--containment",
        type=float,
        default=None,
        help="share of a benchmark item's bigram weight in a row that flags it "
        f"(default: the preset's; gpt3 {defaults.containment})",
    )
    parser.set_defaults(handler=_run)
