"""Watermark detection and quality cost on the default model's own output.

Generates ~N tokens for each prompt twice through `TransformersEngine`, once plain and
once with the green-list processor, then reports: z-scores, detection rate (TPR) of the
watermarked texts, false-positive rate on plain model output and on human text (seed
passages of the same length), and the perplexity of both outputs under the model itself.

    python benchmarks/watermark_bench.py --model-dir DIR --prompts 32 --tokens 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from synth_lib.engines.base import GenerationRequest, SamplingParams
from synth_lib.engines.transformers_engine import TransformersEngine
from synth_lib.mix.watermark import GreenListLogitsProcessor, WatermarkSpec, detect_tokens
from synth_lib.seeds.reference import reference_passages


def _perplexity(engine: TransformersEngine, prompt: str, completion: str) -> float:
    tok = engine.tokenizer
    prefix = tok(engine._render(GenerationRequest("p", prompt)), return_tensors="pt").input_ids
    full = tok(engine._render(GenerationRequest("p", prompt)) + completion, return_tensors="pt")
    labels = full.input_ids.clone()
    labels[:, : prefix.shape[1]] = -100
    with torch.no_grad():
        loss = engine.model(**full, labels=labels).loss
    return float(torch.exp(loss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--delta", type=float, default=2.0)
    parser.add_argument("--z", type=float, default=4.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    passages = [s.payload["text"] for s in reference_passages(min_chars=900, max_chars=1200)]
    prompts = [f"Explain this in your own words:\n\n{p[:600]}" for p in passages[: args.prompts]]
    spec = WatermarkSpec("benchmark-key", args.gamma, args.delta)
    plain = TransformersEngine(args.model_dir, batch_size=8)
    marked = TransformersEngine(
        args.model_dir, batch_size=8, logits_processors=[GreenListLogitsProcessor(spec)]
    )
    sampling = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=args.tokens)
    requests = [GenerationRequest(f"r{i}", p, sampling, seed=i) for i, p in enumerate(prompts)]
    started = time.perf_counter()
    outputs = {"plain": plain.generate(requests), "watermarked": marked.generate(requests)}
    seconds = time.perf_counter() - started
    tok = plain.tokenizer
    human = [" ".join(p.split()[: int(args.tokens * 0.75)]) for p in passages[-args.prompts :]]
    texts = {name: [r.text for r in results] for name, results in outputs.items()}
    texts["human"] = human
    report: dict = {"settings": vars(args), "generation_seconds": round(seconds, 1)}
    for name, items in texts.items():
        found = [
            detect_tokens(spec, tok(t, add_special_tokens=False).input_ids, args.z) for t in items
        ]
        report[name] = {
            "n": len(found),
            "median_tokens_scored": statistics.median(d.scored for d in found),
            "z_median": round(statistics.median(d.z for d in found), 2),
            "z_min": round(min(d.z for d in found), 2),
            "z_max": round(max(d.z for d in found), 2),
            "flagged_rate": round(sum(d.watermarked for d in found) / len(found), 3),
            "z": [round(d.z, 2) for d in found],
        }
    for name in ("plain", "watermarked"):
        ppl = [_perplexity(plain, p, t) for p, t in zip(prompts, texts[name], strict=True)]
        report[name]["perplexity_median"] = round(statistics.median(ppl), 2)
    print(json.dumps({k: v for k, v in report.items()}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
