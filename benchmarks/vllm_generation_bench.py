"""The project's own vLLM generation path against raw vLLM, same GPU, same workload.

Workload (that of the raw anchor script): dummy weights, Qwen2.5-0.5B shape with 2,000
prompts and Qwen2.5-7B shape with 1,000 prompts, 256 random prompt token ids in, exactly
256 tokens out (ignore_eos), temperature 0.8, the raw script's own prompts (same RNG).
Ours goes through `build_engine("vllm", ...)` and `CachedEngine` with a fresh response
cache, as the assets do, so request building, cache keys, SQLite commits and output
joining are all inside the timed region. Each side is timed after an 8-prompt warm-up.

Side by side, raw first, one process per engine start (needs vLLM and a GPU):
    python3 benchmarks/vllm_generation_bench.py --raw-bench PATH/TO/raw_vllm_bench.py
Ours alone, one shape:
    python3 benchmarks/vllm_generation_bench.py --arch qwen2.5-0.5b --prompts 2000
`--seed-modes per-request,engine` also times the path without per-request seeds (vLLM
samples seeded requests one by one), on the same engine after a prefix-cache reset.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHS = {
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_attention_heads=14,
        num_hidden_layers=24,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_attention_heads=28,
        num_hidden_layers=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
}
SHAPES = (("qwen2.5-0.5b", 2000), ("qwen2.5-7b", 1000))


def write_config(arch: str) -> str:
    """A config-only model directory, identical to the raw script's."""
    cfg = dict(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        torch_dtype="bfloat16",
        hidden_act="silu",
        bos_token_id=151643,
        eos_token_id=151645,
        use_sliding_window=False,
        attention_dropout=0.0,
        **ARCHS[arch],
    )
    folder = tempfile.mkdtemp(prefix=f"{arch}-")
    Path(folder, "config.json").write_text(json.dumps(cfg))
    return folder


def workload(prompts: int, in_len: int) -> list[list[int]]:
    """The raw script's prompts: the same RNG, seed and draw order."""
    rng = random.Random(0)
    return [[rng.randrange(1000, 100000) for _ in range(in_len)] for _ in range(prompts)]


def run_ours(arch: str, prompts: int, in_len: int, out_len: int, seed_modes: list[str]) -> None:
    import torch

    from synth_lib.engines.base import GenerationRequest, SamplingParams
    from synth_lib.engines.cache import CachedEngine, ResponseCache
    from synth_lib.engines.factory import build_engine, chunk_size
    from synth_lib.engines.vllm_engine import VllmEngine

    began = time.time()
    engine = build_engine(
        "vllm",
        model=write_config(arch),
        load_format="dummy",
        dtype="bfloat16",
        gpu_memory_utilization=0.85,
        max_model_len=4096,
        seed=0,
        prompt_format="token_ids",
        ignore_eos=True,
    )
    load_s = time.time() - began
    sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=out_len)
    requests = [
        GenerationRequest(f"bench-{i}", json.dumps(ids), sampling, seed=i)
        for i, ids in enumerate(workload(prompts, in_len))
    ]
    for mode in seed_modes:
        config = replace(engine.config, seed_per_request=mode == "per-request")
        variant = VllmEngine(config, llm=engine.llm)
        engine.llm.reset_prefix_cache()
        variant.generate(requests[:8])  # warm-up, outside the cache, as raw does
        cache = ResponseCache(Path(tempfile.mkdtemp(prefix="bench-cache-")) / "responses.sqlite")
        cached = CachedEngine(variant, cache, chunk_size=chunk_size("vllm"))
        t0 = time.time()
        results = cached.generate(requests)
        gen_s = time.time() - t0
        out_tok = sum(r.completion_tokens for r in results)
        errors = sum(r.finish_reason == "error" for r in results)
        print(
            json.dumps(
                {
                    "engine": "synth-vllm",
                    "seed_mode": mode,
                    "arch": arch,
                    "prompts": prompts,
                    "in_len": in_len,
                    "out_len": out_len,
                    "load_s": round(load_s, 1),
                    "gen_s": round(gen_s, 2),
                    "out_tok_s": round(out_tok / gen_s),
                    "total_tok_s": round((out_tok + prompts * in_len) / gen_s),
                    "engine_calls": cached.stats.engine_calls,
                    "cached_rows": len(cache),
                    "errors": errors,
                    "gpu": torch.cuda.get_device_name(0),
                }
            ),
            flush=True,
        )


def last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def compare(
    raw_bench: str, archs: list[str], in_len: int, out_len: int, seed_modes: list[str], log: Path
) -> None:
    """Raw then ours for each shape, each in a fresh process; prints both figures and ratios."""
    lengths = ["--in-len", str(in_len), "--out-len", str(out_len)]
    with log.open("a") as errors:
        for arch, prompts in SHAPES:
            if arch not in archs:
                continue
            shape = ["--arch", arch, "--prompts", str(prompts), *lengths]
            raw = subprocess.run(
                [sys.executable, raw_bench, *shape],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                check=True,
            )
            ours = subprocess.run(
                [sys.executable, __file__, *shape, "--seed-modes", ",".join(seed_modes)],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                check=True,
            )
            raw_row = last_json(raw.stdout)
            print(json.dumps(raw_row), flush=True)
            summary = {"arch": arch, "prompts": prompts, "raw_out_tok_s": raw_row["out_tok_s"]}
            for line in ours.stdout.splitlines():
                if line.startswith("{"):
                    row = json.loads(line)
                    print(json.dumps(row), flush=True)
                    summary["gpu"] = row["gpu"]
                    summary[f"ours_{row['seed_mode']}_out_tok_s"] = row["out_tok_s"]
                    ratio = row["out_tok_s"] / raw_row["out_tok_s"]
                    summary[f"ratio_{row['seed_mode']}"] = round(ratio, 3)
            print("SUMMARY " + json.dumps(summary), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw-bench", help="path of the raw vLLM script: run both, side by side")
    ap.add_argument("--arch", default="qwen2.5-0.5b", choices=sorted(ARCHS))
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--in-len", type=int, default=256)
    ap.add_argument("--out-len", type=int, default=256)
    ap.add_argument("--shapes", default=",".join(ARCHS), help="archs to compare (--raw-bench)")
    ap.add_argument("--seed-modes", default="per-request", help="per-request and/or engine")
    ap.add_argument("--log", default=os.devnull, help="where the engines' own logs go")
    a = ap.parse_args()
    modes = a.seed_modes.split(",")
    if a.raw_bench:
        compare(a.raw_bench, a.shapes.split(","), a.in_len, a.out_len, modes, Path(a.log))
    else:
        run_ours(a.arch, a.prompts, a.in_len, a.out_len, modes)


if __name__ == "__main__":
    main()
