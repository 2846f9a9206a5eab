"""Judges with and without constrained choices, on the same inputs and the same model.

Three judges, each asked once free-form (the reply parsed as the stages parse it) and
once constrained to the replies its template names (`SamplingParams.choices`):

- `instructions`: the whole instruction stage over real seed passages and code; writing,
  evolving and answering come from a response cache (identical for both sides), only
  the constitution judge's scores are generated, so `accepted` differs by the judge alone;
- `cot_score`: the same pointwise judge over CoT traces a run kept (`judge_unscored_traces`);
- `pairwise`: swapped A/B comparisons of two CoT traces of one problem;
- `debate`: the debate judge over rephrasings (debater turns cached, the verdict generated).

For each: parse rate, verdict distribution, completion tokens and the judge's wall time
(median of interleaved repeats, `timing.interleaved`). `--data` is a run's data folder
(text_seeds/, code_seeds/, cot_traces/, rephrasings/ parquet shards).

    nice .venv/bin/python benchmarks/constrained_judge_bench.py --model MODEL_DIR --data DATA_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl
from timing import interleaved

from synth_lib.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
)
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.transformers_engine import TransformersEngine
from synth_lib.provenance.schema import RowContext
from synth_lib.reasoning.debate import run_debates
from synth_lib.reasoning.debate_targets import debate_targets
from synth_lib.reasoning.judge import Comparison, Judge
from synth_lib.text.instructions import generate_instructions
from synth_lib.text.personas import load_personas

JUDGE_SUFFIXES = (":score", ":ab", ":ba", ":po", ":op")
CTX = RowContext("constrained-judge-bench")
# the reasoning assets' judge sampling (greedy, `judge_max_tokens=16`)
ASSET_JUDGE = SamplingParams(0.0, 1.0, 16)


class JudgeSplit:
    """Judge requests go to the engine itself (timed, counted); all others via the cache."""

    def __init__(self, engine: Engine, cache: ResponseCache) -> None:
        self.identity: ModelIdentity = engine.identity
        self.engine = engine
        self.cached = CachedEngine(engine, cache, stage="constrained_judge_bench")
        self.judged: list[tuple[GenerationRequest, GenerationResult]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        judge = [r.request_id.endswith(JUDGE_SUFFIXES) for r in requests]
        if not any(judge):
            return self.cached.generate(requests)
        assert all(judge), "a batch mixes judge and other requests"
        results = self.engine.generate(requests)
        self.judged += list(zip(requests, results, strict=True))
        return results


def frame(data: Path, name: str) -> pl.DataFrame:
    parts = [pl.read_parquet(p) for p in sorted((data / name).glob("*.parquet"))]
    return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


def judged_texts(split: JudgeSplit) -> tuple[list[str], int, int]:
    """(raw replies, completion tokens, requests) of the judge calls since the last take."""
    taken, split.judged = split.judged, []
    return [r.text for _, r in taken], sum(r.completion_tokens for _, r in taken), len(taken)


def summary(label: Any, texts: list[str], tokens: int, requests: int) -> dict[str, Any]:
    return {
        "requests": requests,
        "completion_tokens": tokens,
        "tokens_per_request": round(tokens / requests, 2) if requests else None,
        "replies": dict(Counter(t[:80] for t in texts).most_common(4)),
        **label,
    }


def instruction_case(split: JudgeSplit, seeds: list[dict], constrained: bool) -> dict[str, Any]:
    out = generate_instructions(
        seeds, split, CTX, personas=load_personas(), judge=Judge(split, constrained=constrained)
    )
    judge = [v for row in out.rows for v in row["verdicts"] if v["name"] == "judge"]
    scores = Counter(v["score"] for v in judge)
    label = {
        "rows": len(out.rows),
        "judged": len(judge),
        "parsed": sum(v["score"] is not None for v in judge),
        "accepted": sum(r["accepted"] for r in out.rows),
        "scores": {str(k): n for k, n in sorted(scores.items(), key=lambda kv: str(kv[0]))},
        "rejection_reasons": dict(out.rejection_reasons),
    }
    return summary(label, *judged_texts(split))


def score_case(split: JudgeSplit, items: list[tuple[str, str, str]], constrained: bool) -> dict:
    scores = Judge(split, sampling=ASSET_JUDGE, constrained=constrained).score(items)
    counts = Counter(scores)
    label = {
        "judged": len(scores),
        "parsed": sum(s is not None for s in scores),
        "scores": {str(k): n for k, n in sorted(counts.items(), key=lambda kv: str(kv[0]))},
    }
    return summary(label, *judged_texts(split))


def pairwise_case(split: JudgeSplit, comparisons: list[Comparison], constrained: bool) -> dict:
    judgements = Judge(split, sampling=ASSET_JUDGE, constrained=constrained).compare(comparisons)
    passes = [p for j in judgements for p in (j.forward, j.backward)]
    label = {
        "judged": 2 * len(judgements),
        "parsed": sum(p is not None for p in passes),
        "preferences": dict(Counter(str(p) for p in passes)),
        "decisions": dict(Counter(j.reason for j in judgements)),
    }
    return summary(label, *judged_texts(split))


def debate_case(split: JudgeSplit, items: list, tokens: int, constrained: bool) -> dict[str, Any]:
    turns = SamplingParams(temperature=0.7, max_tokens=tokens)
    outcomes = run_debates(items, split, rounds=1, sampling=turns, constrained=constrained)
    judged = [o for o in outcomes if not o.reason.startswith(("debater_", "judge_injection"))]
    passes = [d for o in judged for d in o.decisions]
    label = {
        "judged": len(passes),
        "parsed": sum(d is not None for d in passes),
        "decisions": dict(Counter(str(d) for d in passes)),
        "outcomes": dict(Counter(o.reason for o in outcomes)),
    }
    return summary(label, *judged_texts(split))


def compare(name: str, run: Callable[[bool], dict], repeats: int, prime: bool) -> dict[str, Any]:
    """Free vs constrained, interleaved; `prime` first fills the cache with everything but
    the judge's replies (an untimed constrained run, the cheaper judge)."""
    if prime:
        run(True)
    timed = interleaved({"free": lambda: run(False), "constrained": lambda: run(True)}, repeats, 0)
    out = {mode: {**result, "median_s": round(s, 2)} for mode, (result, s) in timed.items()}
    print(name, json.dumps(out, indent=1), file=sys.stderr)
    return out


def cot_inputs(traces: pl.DataFrame, count: int) -> tuple[list, list[Comparison]]:
    rows = traces.sort("id").to_dicts()
    items = [(r["id"], r["prompt"], r["response"]) for r in rows[:count]]
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem_id"], []).append(r)
    comparisons = [
        Comparison(f"{pid}:pair", group[0]["prompt"], group[0]["response"], group[1]["response"])
        for pid, group in sorted(by_problem.items())
        if len(group) > 1
    ]
    return items, comparisons[: count // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("SYNTH_MODEL", ""), required=False)
    parser.add_argument("--data", type=Path, required=True, help="a run's data folder")
    parser.add_argument("--seeds", type=int, default=6, help="text and code seeds each")
    parser.add_argument("--items", type=int, default=12, help="CoT traces scored / 2 compared")
    parser.add_argument("--debates", type=int, default=6)
    parser.add_argument(
        "--debate-tokens", type=int, default=256, help="per debater turn (the stage's is 128)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "constrained_judge.sqlite"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--only", nargs="*", choices=("instructions", "cot_score", "pairwise", "debate")
    )
    args = parser.parse_args()
    if not args.model or not Path(args.model).is_dir():
        parser.error("--model (or SYNTH_MODEL) must be a local weights directory")
    began = time.perf_counter()
    split = JudgeSplit(TransformersEngine(args.model), ResponseCache(args.cache))
    text, code = frame(args.data, "text_seeds"), frame(args.data, "code_seeds")
    seeds = [
        *text.sort("id").head(args.seeds).to_dicts(),
        *code.sort("id").head(args.seeds).to_dicts(),
    ]
    items, comparisons = cot_inputs(frame(args.data, "cot_traces"), args.items)
    debates = debate_targets(
        frame(args.data, "rephrasings"),
        pl.DataFrame({"pair_source": [], "id": []}, schema={"pair_source": pl.Utf8, "id": pl.Utf8}),
        text,
        share=1.0,
        max_items=args.debates,
    )
    cases: dict[str, tuple[Callable[[bool], dict], bool]] = {
        "instructions": (lambda c: instruction_case(split, seeds, c), True),
        "cot_score": (lambda c: score_case(split, items, c), False),
        "pairwise": (lambda c: pairwise_case(split, comparisons, c), False),
        "debate": (lambda c: debate_case(split, debates, args.debate_tokens, c), True),
    }
    report: dict[str, Any] = {
        "model": split.identity.model,
        "revision": split.identity.revision,
        "repeats": args.repeats,
    }
    for name in args.only or list(cases):
        run, prime = cases[name]
        report[name] = compare(name, run, args.repeats, prime)
    report["total_s"] = round(time.perf_counter() - began, 1)
    text_out = json.dumps(report, indent=1)
    print(text_out)
    if args.out:
        args.out.write_text(text_out + "\n")


if __name__ == "__main__":
    main()
