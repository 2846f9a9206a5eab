"""Answer forcing and stop strings for verified CoT: with and without, on the same samples.

Four variants of `cot.solve` on the same problems, seeds and k:

- `off`: plain sampling (the CotConfig sampling before forcing);
- `force`: a finished sample without a final answer gets one answer-only request
  (12 tokens; `force24`: 24);
- `stop`: sampling stops where the model starts writing a new problem ("\\nProblem:"),
  so it cannot ramble past its answer into truncation or a second answer;
- `stop+force`: both.

All variants share one memoising engine, as the response cache does in a run: `force`
reuses `off`'s samples and adds only its answer-only requests, so the figures compare
the same samples. Tokens count every request a variant makes (prompt + completion),
memoised or not; seconds count only the requests a variant adds over the variants
before it (with `--memo`, over earlier invocations too: the memo is a response cache).
Problems: the default `rgym` shard's reasoning-gym cells and the first GSM8K problems
(by id) of the default `gsm8k` shard.

    nice .venv/bin/python benchmarks/cot_answer_forcing_bench.py --model MODEL_DIR \\
        --gsm8k ../shared/data/gsm8k/train.jsonl --math 4 --k 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth_lib.engines.base import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ModelIdentity,
    SamplingParams,
    cache_key,
)
from synth_lib.engines.transformers_engine import TransformersEngine
from synth_lib.provenance.schema import RowContext
from synth_lib.reasoning import cot
from synth_lib.reasoning.answers import extract_answer, forced_answer
from synth_lib.reasoning.tasks import DEFAULT_TASKS, Problem, problems_from_rows, reasoning_gym_rows
from synth_lib.seeds.cleaning import clean_seeds
from synth_lib.seeds.gsm8k import gsm8k_seeds

CTX = RowContext(run_id="cot-answer-forcing-bench")
STOP = ("\nProblem:", "\nExample problem:")


class MeteredEngine:
    """Memoises answers by cache key and meters tokens, requests and fresh seconds."""

    def __init__(self, inner: Engine, memo: Path | None = None) -> None:
        self.inner = inner
        self.identity: ModelIdentity = inner.identity
        self.path = memo
        self.memo: dict[str, GenerationResult] = {}
        if memo is not None and memo.is_file():
            saved = json.loads(memo.read_text())
            self.memo = {key: GenerationResult(**value) for key, value in saved.items()}
        self.reset()

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps({k: asdict(v) for k, v in self.memo.items()}))

    def reset(self) -> None:
        self.requests = self.tokens = self.completion_tokens = self.fresh = 0
        self.seconds = 0.0
        self.results: list[tuple[GenerationRequest, GenerationResult]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        keys = [cache_key(self.identity, r) for r in requests]
        missing = [r for r, k in zip(requests, keys, strict=True) if k not in self.memo]
        if missing:
            began = time.perf_counter()
            answers = self.inner.generate(missing)
            self.seconds += time.perf_counter() - began
            self.fresh += len(missing)
            for request, answer in zip(missing, answers, strict=True):
                self.memo[cache_key(self.identity, request)] = answer
        out = [self.memo[k] for k in keys]
        for request, result in zip(requests, out, strict=True):
            self.requests += 1
            self.tokens += result.prompt_tokens + result.completion_tokens
            self.completion_tokens += result.completion_tokens
            self.results.append((request, result))
        return out


def benchmark_problems(gsm8k: str | None, math: int, per_cell: int) -> list[Problem]:
    """The default shards' problems: rgym shard 0 cells and the first `math` GSM8K by id."""
    rows = reasoning_gym_rows(DEFAULT_TASKS, ["easy", "medium"], per_cell, CTX, 0)
    math_rows: list[dict] = []
    if gsm8k and math:
        raw, _ = gsm8k_seeds(gsm8k)
        batch = clean_seeds(raw[:64], stage="math_seeds", ctx=CTX)
        math_rows = sorted(batch.rows, key=lambda r: r["id"])[:math]
    return problems_from_rows(math_rows + rows)


def run_variant(
    name: str,
    problems: Sequence[Problem],
    engine: MeteredEngine,
    k: int,
    sampling: SamplingParams,
    forcing: cot.AnswerForcing | None,
    seed: int = 0,
) -> dict:
    engine.reset()
    outcome = cot.solve(
        problems, engine, CTX, k=k, sampling=sampling, forcing=forcing, base_seed=seed
    )
    replies = {
        req.request_id.removesuffix(":force"): res
        for req, res in engine.results
        if req.request_id.endswith(":force")
    }
    samples = [
        (req, res)
        for req, res in engine.results
        if req.request_id.count(":") == 1 and not req.request_id.endswith(":rationalize")
    ]
    own = sum(res.ok and extract_answer(res.text) is not None for _, res in samples)
    forced = sum(
        req.request_id in replies
        and replies[req.request_id].ok
        and forced_answer(replies[req.request_id].text) is not None
        for req, _ in samples
    )
    truncated = sum(res.finish_reason == "length" for _, res in samples)
    summary = cot.cot_summary(problems, outcome, k)
    verified = len(outcome.kept)
    return {
        "variant": name,
        "samples": len(samples),
        "sample_pass_rate": summary["sample_pass_rate"],
        "pass_at_k": summary["pass_at_k"],
        "correct_samples": sum(outcome.correct_samples.values()),
        "own_final_answer_share": round(own / len(samples), 4) if samples else 0.0,
        "final_answer_share": round((own + forced) / len(samples), 4) if samples else 0.0,
        "truncated_samples": truncated,
        "forced_attempts": outcome.forced_attempts,
        "forced_answers": outcome.forced_answers,
        "forced_correct_samples": outcome.forced_correct,
        "rationalized": outcome.rationalized,
        "verified_rows": verified,
        "requests": engine.requests,
        "tokens": engine.tokens,
        "completion_tokens": engine.completion_tokens,
        "tokens_per_verified_row": round(engine.tokens / verified, 1) if verified else None,
        "fresh_requests": engine.fresh,
        "fresh_seconds": round(engine.seconds, 1),
        "drops": dict(sorted(outcome.drops.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("SYNTH_MODEL", ""), required=False)
    parser.add_argument("--gsm8k", default=os.environ.get("SYNTH_GSM8K_PATH", ""))
    parser.add_argument("--math", type=int, default=4, help="GSM8K problems")
    parser.add_argument("--per-cell", type=int, default=1, help="reasoning-gym problems per cell")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="base sampling seed")
    parser.add_argument("--variants", default="off,force,stop,stop+force")
    parser.add_argument(
        "--memo", type=Path, help="JSON file of answers kept between invocations (a cache)"
    )
    args = parser.parse_args()
    engine = MeteredEngine(TransformersEngine(args.model, threads=args.threads), args.memo)
    problems = benchmark_problems(args.gsm8k, args.math, args.per_cell)
    plain = SamplingParams(0.8, 0.95, args.max_tokens)
    stopped = SamplingParams(0.8, 0.95, args.max_tokens, stop=STOP)
    variants = {
        "off": (plain, None),
        "force": (plain, cot.AnswerForcing()),
        "force24": (plain, cot.AnswerForcing(max_tokens=24)),
        "stop": (stopped, None),
        "stop+force": (stopped, cot.AnswerForcing()),
    }
    print(json.dumps({"problems": len(problems), "k": args.k, "model": engine.identity.model}))
    for name in args.variants.split(","):
        sampling, forcing = variants[name]
        print(
            json.dumps(run_variant(name, problems, engine, args.k, sampling, forcing, args.seed)),
            flush=True,
        )
        engine.save()


if __name__ == "__main__":
    main()
