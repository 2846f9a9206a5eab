"""`synth watermark detect IN OUT`: score every row's text for the green-list watermark.

The key is read from SYNTH_WATERMARK_KEY only; `--key-id` makes the command refuse a key
other than the one the rows' provenance names. Text is tokenized with the generating
model's tokenizer (`--tokenizer`, default SYNTH_MODEL). OUT keeps every input row and
column and adds `watermark_z`, `watermark_tokens` (tokens scored) and `watermarked`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from synth_lib.commands.dedup import EXIT_BAD_INPUT, InputError, read_table, write_table
from synth_lib.mix.watermark import (
    DEFAULT_Z_THRESHOLD,
    KEY_ENV,
    detect_tokens,
    spec_from_env,
)


def _detect(args: argparse.Namespace) -> int:
    try:
        spec = spec_from_env(gamma=args.gamma, context_width=args.context_width)
        if args.key_id and spec.key_id != args.key_id:
            raise ValueError(
                f"{KEY_ENV} is key {spec.key_id}, not {args.key_id} (with gamma {args.gamma}, "
                f"context width {args.context_width})"
            )
        if not args.tokenizer:
            raise ValueError(
                "name the generating model's tokenizer: --tokenizer DIR or SYNTH_MODEL"
            )
        table = read_table(Path(args.input), args.text_column)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    encoded = tokenizer(table.texts, add_special_tokens=False)["input_ids"]
    found = [detect_tokens(spec, ids, args.z_threshold) for ids in encoded]
    added = {
        "watermark_z": [round(d.z, 4) for d in found],
        "watermark_tokens": [d.scored for d in found],
        "watermarked": [d.watermarked for d in found],
    }
    write_table(table, Path(args.output), added)
    hits = sum(added["watermarked"])
    print(json.dumps({"rows": len(found), "watermarked": hits, "key_id": spec.key_id}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "watermark",
        help="green-list watermark detection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    detect = verbs.add_parser("detect", help="add watermark_z / watermarked to every row")
    detect.add_argument("input", metavar="IN", help=".jsonl or .parquet with a text column")
    detect.add_argument("output", metavar="OUT", help="output .jsonl or .parquet")
    detect.add_argument("--key-id", default="", help="refuse a key with another id")
    detect.add_argument("--tokenizer", default=os.environ.get("SYNTH_MODEL", ""))
    detect.add_argument("--text-column", default="text")
    detect.add_argument("--gamma", type=float, default=0.25, help="green share (as generated)")
    detect.add_argument("--context-width", type=int, default=1, help="tokens hashed (as generated)")
    detect.add_argument(
        "--z-threshold",
        type=float,
        default=DEFAULT_Z_THRESHOLD,
        help="z at or above which a row is watermarked",
    )
    detect.set_defaults(handler=_detect)
