"""Code explanations on one shard's real inputs: pass rate, accepted rows, tokens, wall.

Reads a run's `code_seeds` and `execution_traces` shard (the stage's exact inputs), picks
functions as the asset does, and runs `explain_code` with the asset's default config on
one engine with no response cache, so every figure is a fresh generation. Each row is
printed with where it was lost or why it was rejected. Every request's tokens count,
lost ones too. `--blind` also asks each accepted row's calls with the explanation removed:
how many the model gets right without it (what the explanation adds).

    python benchmarks/explanation_bench.py --data RUN_HOME/data --shard stdlib-n64-00000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from synth_assets.code import ExplanationsConfig
from synth_lib.code import explanations
from synth_lib.engines.base import GenerationRequest, GenerationResult, SamplingParams
from synth_lib.engines.factory import build_engine, resolve_model_dir
from synth_lib.prompts import load_template
from synth_lib.provenance.schema import RowContext


class CountingEngine:
    """Passes requests on; sums every request's tokens and keeps each result by id."""

    def __init__(self, engine) -> None:
        self.engine, self.identity = engine, engine.identity
        self.tokens = 0
        self.results: dict[str, GenerationResult] = {}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        out = self.engine.generate(requests)
        for result in out:
            self.tokens += result.prompt_tokens + result.completion_tokens
            self.results[result.request_id] = result
        return out


def _choose(seeds: pl.DataFrame, traces: pl.DataFrame, limit: int, how: str) -> list[dict]:
    traced = set(traces.get_column("function"))
    pool = seeds.filter(pl.col("name").is_in(list(traced))).sort("id").to_dicts()
    if how == "id":
        return pool[:limit] if limit else pool
    return explanations.choose_functions(pool, traces.to_dicts(), limit)


def _blind(engine, rows: list[dict]) -> int:
    """Calls of accepted rows the model predicts with no explanation at all."""
    predict = load_template(explanations.PREDICT_TEMPLATE)
    asks = [
        (expected, GenerationRequest(f"blind:{i}:{j}", predict.render(
            name=row["function"], explanation="(no explanation given)", expression=expr),
            SamplingParams(temperature=0.0, max_tokens=48)))
        for i, row in enumerate(rows) if row["accepted"]
        for j, (expr, expected) in enumerate(zip(row["expressions"], row["expected"], strict=True))
    ]  # fmt: skip
    results = engine.generate([r for _, r in asks]) if asks else []
    return sum(
        explanations.outputs_match(explanations.prediction_line(r), e)
        for (e, _), r in zip(asks, results, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=".synth/models")
    parser.add_argument("--data", required=True, help="a run's data folder")
    parser.add_argument("--shard", default="stdlib-n64-00000")
    parser.add_argument("--functions", type=int, default=-1, help="-1: the asset's default")
    parser.add_argument("--select", choices=("id", "ease"), default="ease")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blind", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    data = Path(args.data)
    seeds = pl.read_parquet(data / "code_seeds" / f"{args.shard}.parquet")
    traces = pl.read_parquet(data / "execution_traces" / f"{args.shard}.parquet")
    config = ExplanationsConfig()
    limit = config.max_functions if args.functions < 0 else args.functions
    chosen = _choose(seeds, traces, limit, args.select)
    model_dir = resolve_model_dir("", args.models_dir)
    base = build_engine("transformers", model_dir=model_dir, batch_size=16, threads=args.threads)
    report: dict = {"functions": [c["name"] for c in chosen], "runs": []}
    for seed in args.seeds:
        engine = CountingEngine(base)
        settings = explanations.ExplanationSettings(
            sampling=SamplingParams(config.temperature, max_tokens=config.max_tokens),
            seed=seed,
            traces_per_function=config.traces_per_function,
        )
        began = time.perf_counter()
        outcome = explanations.explain_code(
            chosen, traces.to_dicts(), engine, RowContext("bench"), settings
        )
        wall = time.perf_counter() - began
        accepted = sum(r["accepted"] for r in outcome.rows)
        finish = Counter(r.finish_reason for k, r in engine.results.items() if "explain" in k)
        run = {
            "seed": seed,
            "explained": len(chosen),
            "rows": len(outcome.rows),
            "accepted": accepted,
            "pass_rate": round(accepted / len(chosen), 3) if chosen else 0.0,
            "tokens": engine.tokens,
            "tokens_per_accepted": round(engine.tokens / accepted) if accepted else None,
            "wall_s": round(wall, 1),
            "explain_finish": dict(finish),
            "lost": dict(outcome.lost),
            "raw_predictions": [
                f"{r.finish_reason}: {r.text[:120]}"
                for k, r in engine.results.items() if ":predict:" in k
            ],
            "rejections": dict(outcome.rejection_reasons),
            "detail": [
                {
                    "function": r["function"],
                    "accepted": r["accepted"],
                    "completion_tokens": r["completion_tokens"],
                    "failed": [v["name"] + ":" + str(v["reason"]) for v in r["verdicts"]
                               if not v["passed"]],
                    "expressions": r["expressions"],
                    "predicted": r["predicted"],
                    "response": r["response"][:400],
                }
                for r in outcome.rows
            ],
        }  # fmt: skip
        if args.blind:
            run["blind_matches"] = _blind(base, outcome.rows)
        report["runs"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "detail"}), file=sys.stderr)
    runs = report["runs"]
    report["median"] = {
        key: statistics.median(r[key] for r in runs if r[key] is not None)
        if any(r[key] is not None for r in runs) else None
        for key in ("pass_rate", "accepted", "tokens", "tokens_per_accepted", "wall_s")
    }  # fmt: skip
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
