"""Dialogues on the default model: pass rate, accepted rows, tokens per accepted row, wall.

Runs `generate_dialogues` directly (no Dagster, no response cache) on the first text and
code seeds by id (or, with `--data`, each shard's first seeds from a run's data folder, as
the asset picks them), with one engine. `--impl FILE` runs another version of the dialogues
module instead (e.g. `git show <rev>:synth_lib/text/dialogues.py > old.py`), so two
versions can be compared on the same seeds and engine:

    python benchmarks/dialogue_bench.py --text 4 --code 4 --threads 1
    python benchmarks/dialogue_bench.py --text 4 --code 4 --threads 1 --impl old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import polars as pl

from synth_lib.curation.anchor_filter import MiniLMEmbedder
from synth_lib.engines.base import Engine, GenerationRequest, GenerationResult
from synth_lib.engines.factory import build_engine, resolve_model_dir
from synth_lib.provenance.schema import RowContext, make_row
from synth_lib.seeds.reference import reference_passages
from synth_lib.seeds.stdlib_code import stdlib_functions
from synth_lib.text import dialogues
from synth_lib.text.personas import load_personas

CTX = RowContext("bench")


class CountingEngine:
    """Passes requests through and counts requests and tokens, lost conversations too."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.identity = engine, engine.identity
        self.requests = self.batches = self.prompt_tokens = self.completion_tokens = 0
        self.log: list[dict] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = self.engine.generate(requests)
        self.batches += 1
        self.requests += len(requests)
        self.prompt_tokens += sum(r.prompt_tokens for r in results)
        self.completion_tokens += sum(r.completion_tokens for r in results)
        self.log += [
            {"id": q.request_id, "prompt_end": q.prompt[-160:], "text": r.text,
             "finish": r.finish_reason, "tokens": r.completion_tokens}
            for q, r in zip(requests, results, strict=True)
        ]  # fmt: skip
        return results


def _seed_rows(raw, stage: str, n: int) -> list[dict]:
    rows = (make_row(stage=stage, payload=r.payload, ctx=CTX, source=r.source) for r in raw)
    return sorted(rows, key=lambda row: row["id"])[:n]


def _shard_seeds(data: Path, n_text: int, n_code: int) -> list[list[dict]]:
    """Each shard's first text and code seeds by id, as the dialogues asset picks them."""
    groups = []
    for shard in sorted(p.name for p in (data / "text_seeds").glob("*.parquet")):
        seeds: list[dict] = []
        for folder, n in (("text_seeds", n_text), ("code_seeds", n_code)):
            path = data / folder / shard
            if n and path.exists():
                seeds += pl.read_parquet(path).sort("id").head(n).to_dicts()
        groups.append(seeds)
    return [g for g in groups if g]


def _module(path: str) -> ModuleType:
    if not path:
        return dialogues
    spec = importlib.util.spec_from_file_location("dialogues_under_test", Path(path))
    assert spec and spec.loader
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=".synth/models")
    parser.add_argument("--text", type=int, default=4, help="text seeds")
    parser.add_argument("--code", type=int, default=4, help="code seeds")
    parser.add_argument("--data", default="", help="a run's data folder: per-shard seeds")
    parser.add_argument("--impl", default="", help="a dialogues module file to run instead")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--examples", type=int, default=3, help="accepted rows to print")
    parser.add_argument("--out", default="", help="write the figures as JSON here too")
    parser.add_argument("--dump", default="", help="write every request's reply as JSON here")
    args = parser.parse_args()

    module = _module(args.impl)
    model_dir = resolve_model_dir("", args.models_dir)
    base = build_engine("transformers", model_dir=model_dir, batch_size=16, threads=args.threads)
    engine = CountingEngine(base)
    if args.data:  # one call per shard, as the asset runs
        groups = _shard_seeds(Path(args.data), args.text, args.code)
    else:
        groups = [
            _seed_rows(reference_passages(), "text_seeds", args.text)
            + _seed_rows(stdlib_functions(), "code_seeds", args.code)
        ]
    seeds = [row for group in groups for row in group]
    embedder, personas = MiniLMEmbedder(), load_personas()
    outcome = module.DialogueOutcome()
    began = time.perf_counter()
    for group in groups:
        part = module.generate_dialogues(group, engine, CTX, embedder, personas=personas)
        outcome.rows += part.rows
        for name in ("rejection_reasons", "lost", "turns", "tails_dropped"):
            if hasattr(part, name):
                getattr(outcome, name).update(getattr(part, name))
    seconds = time.perf_counter() - began
    accepted = [r for r in outcome.rows if r["accepted"]]
    report = {
        "impl": args.impl or "current",
        "seeds": len(seeds),
        "calls": len(groups),
        "rows": len(outcome.rows),
        "accepted": len(accepted),
        "pass_rate": round(len(accepted) / len(seeds), 4) if seeds else 0.0,
        "requests": engine.requests,
        "engine_batches": engine.batches,
        "prompt_tokens": engine.prompt_tokens,
        "completion_tokens": engine.completion_tokens,
        "completion_tokens_per_accepted": (
            round(engine.completion_tokens / len(accepted), 1) if accepted else None
        ),
        "seconds": round(seconds, 1),
        "rejections": dict(outcome.rejection_reasons),
        "lost": dict(outcome.lost),
        "tails_dropped": dict(getattr(outcome, "tails_dropped", {})),
        "turns": dict(outcome.turns),
        "examples": [r["messages"] for r in accepted[: args.examples]],
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if args.dump:
        Path(args.dump).write_text(json.dumps(engine.log, indent=1, ensure_ascii=False))
    print(f"dialogues: {seconds:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
