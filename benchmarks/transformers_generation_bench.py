"""Our transformers engine vs a plain `model.generate` loop: output tokens/s on the same prompts.

Both sides load the same weights once and get the same chat-rendered prompts, the same
sampling settings and the same batch size, in the same process, taking turns
(`timing.interleaved`) so a busy machine slows them alike. The plain loop is what a user
would write: batches in request order, left padding, `generate`, tokens counted up to each
sequence's end-of-turn token. The engine sorts by prompt length and decodes per sequence.

    .venv/bin/python benchmarks/transformers_generation_bench.py --requests 32 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import interleaved

from synth_lib.engines.base import GenerationRequest, SamplingParams
from synth_lib.engines.default_model import ensure_default_model
from synth_lib.engines.transformers_engine import TransformersEngine
from synth_lib.prompts import load_template
from synth_lib.seeds.reference import reference_passages


def _requests(count: int, max_tokens: int, temperature: float) -> list[GenerationRequest]:
    """Rephrasing prompts over reference passages of mixed lengths, as `rephrasings` sends."""
    passages = [s.payload["text"] for s in reference_passages(300, 1200)]
    template = load_template("rephrase_wikipedia")
    sampling = SamplingParams(temperature=temperature, top_p=0.95, max_tokens=max_tokens)
    return [
        GenerationRequest(f"r{i}", template.render(text=p), sampling, seed=i)
        for i, p in enumerate(passages[:count])
    ]


def _plain_loop(engine: TransformersEngine, requests: list[GenerationRequest], batch: int) -> int:
    """A plain batched `generate` loop on the engine's own model; returns output tokens."""
    import torch

    tokenizer, model = engine.tokenizer, engine.model
    sampling = requests[0].sampling
    stops = set(engine._stop_ids)
    produced = 0
    for start in range(0, len(requests), batch):
        chunk = requests[start : start + batch]
        encoded = tokenizer(
            [engine._render(r) for r in chunk],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        torch.manual_seed(start)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=sampling.max_tokens,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=list(stops),
            )
        for row in output[:, encoded["input_ids"].shape[1] :].tolist():
            ended = next((k for k, t in enumerate(row) if t in stops), None)
            produced += len(row) if ended is None else ended + 1
    return produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="", help="weights folder (default: SmolLM2)")
    parser.add_argument("--models-dir", default=".synth/models")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="", help="write the figures as JSON here")
    args = parser.parse_args()

    model_dir = args.model_dir or ensure_default_model(args.models_dir)
    engine = TransformersEngine(model_dir, batch_size=args.batch_size)
    requests = _requests(args.requests, args.max_tokens, args.temperature)

    def ours() -> int:
        return sum(r.completion_tokens for r in engine.generate(requests))

    timed = interleaved(
        {"engine": ours, "plain_generate": lambda: _plain_loop(engine, requests, args.batch_size)},
        repeats=args.repeats,
        warmup=0,
    )
    figures = {
        name: {"output_tokens": tokens, "median_s": round(seconds, 2)}
        for name, (tokens, seconds) in timed.items()
    }
    for entry in figures.values():
        entry["tokens_per_s"] = round(entry["output_tokens"] / entry["median_s"], 2)
    figures["ratio_engine_vs_plain"] = round(
        figures["engine"]["tokens_per_s"] / figures["plain_generate"]["tokens_per_s"], 3
    )
    figures["settings"] = {**vars(args), "model": engine.identity.model}
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
