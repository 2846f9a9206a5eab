"""What one hostile answer costs the `openai` backend: memory, time, and what gets cached.

A loopback server (`tests/hostile_server.py`) answers each behaviour; a child process runs
`CachedEngine(OpenAIEngine)` with the backend's default limits against it and reports its
peak RSS, the peak of Python allocations during `generate`, the wall time, the outcome
and whether anything was cached. Run it against another checkout's code (for a before /
after table) by putting that checkout first on PYTHONPATH.

    python benchmarks/hostile_server_bench.py --behaviours ok huge gzipbomb
    python benchmarks/hostile_server_bench.py --behaviours trickle --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_server import HostileServer  # noqa: E402

CHILD = """
import json, sys, time, tracemalloc
from synth_lib.engines.base import GenerationRequest, SamplingParams
from synth_lib.engines.cache import CachedEngine, ResponseCache
from synth_lib.engines.openai_engine import OpenAIConfig, OpenAIEngine

def high_water_mib():  # VmHWM starts afresh at exec, unlike ru_maxrss
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)

url, behaviour, batch, cache_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
engine = OpenAIEngine(OpenAIConfig(base_url=url, model="bench-model"), seed=0)
cached = CachedEngine(engine, ResponseCache(cache_path))
requests = [
    GenerationRequest(f"r{i}", f"{behaviour}:{i}", SamplingParams(max_tokens=128))
    for i in range(batch)
]
rss_before = high_water_mib()
tracemalloc.start()
began = time.perf_counter()
try:
    results = cached.generate(requests)
    outcome = sorted({(r.finish_reason, (r.error or "")[:90]) for r in results})
except Exception as exc:
    outcome = [("raised", f"{type(exc).__name__}: {exc}"[:90])]
elapsed = time.perf_counter() - began
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
try:
    frame_ok = "ok"
    import polars as pl
    pl.DataFrame({"text": [r.text for r in results]})
except Exception as exc:
    frame_ok = f"{type(exc).__name__}"
print(json.dumps({
    "behaviour": behaviour,
    "batch": batch,
    "seconds": round(elapsed, 2),
    "peak_alloc_mib": round(peak / 2**20, 1),
    "peak_rss_mib": high_water_mib(),
    "rss_before_mib": rss_before,
    "cached": len(cached.cache),
    "frame": frame_ok,
    "outcome": outcome,
}))
"""


def run_one(url: str, behaviour: str, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, url, behaviour, str(batch), f"{tmp}/c.sqlite"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))},
            check=False,
        )
    if out.returncode:
        return {"behaviour": behaviour, "failed": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviours", nargs="+", default=["ok", "huge", "gzipbomb"])
    parser.add_argument("--batch", type=int, default=1, help="requests per behaviour")
    args = parser.parse_args()
    with HostileServer() as server:
        for behaviour in args.behaviours:
            print(json.dumps(run_one(server.url, behaviour, args.batch)), flush=True)


if __name__ == "__main__":
    main()
