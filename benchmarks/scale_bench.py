"""The factory at scale, without a model: the sharded per-row path and cross-shard curation.

`pipeline` writes N generated passages as one JSONL file into a fresh SYNTH_SEED_DIR,
registers its shards and runs the `synth_shards` job once per shard (in-process executor,
as `make run` does) with the `openai` engine pointed at a loopback OpenAI-compatible server
started here (a benchmark double: it answers at once with a passage-specific rewrite).
Rephrasings take every seed in one style. From the event log: rows/s end to end, Dagster
overhead share (sum of run walls minus sum of STEP_START→end) and, from a psutil sampler
in the run process, the peak RSS inside each step's window.

`curation` hashes M synthetic rows shard by shard into the persisted band store
(`synth_lib.curation.band_store`, what `decontaminated_mix` does per shard) and clusters
them across shards; peak RSS of the process and seconds.

    python benchmarks/scale_bench.py pipeline --rows 1000 --shard-rows 1000
    python benchmarks/scale_bench.py curation --rows 1000000 --shard-rows 100000
    python benchmarks/scale_bench.py dedup --rows 20000 --repeats 3
    python benchmarks/scale_bench.py dedup-memory --rows 200000

`dedup` times `synth dedup IN OUT` on generated ~1 KB documents as a whole process (what
a user waits for, imports included) against a plain datasketch script (`update_batch` +
`MinHashLSH`, 128 permutations), interleaved, medians; peak RSS from each child's rusage.
`dedup-memory` runs `synth dedup` once on such documents and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

VOCAB = [
    "loops",
    "lists",
    "tuples",
    "dictionaries",
    "sets",
    "classes",
    "modules",
    "functions",
    "generators",
    "iterators",
    "closures",
    "decorators",
    "exceptions",
    "files",
    "strings",
    "bytes",
    "integers",
    "floats",
    "recursion",
    "sorting",
    "searching",
    "queues",
    "stacks",
    "trees",
    "graphs",
    "hashing",
    "caching",
    "threads",
    "processes",
    "sockets",
    "parsing",
]
STYLE = "easy"


def passage(i: int, rng: random.Random) -> str:
    words = rng.choices(VOCAB, k=60)
    return f"Passage {i} explains " + " ".join(words) + "."


class FakeOpenAI(BaseHTTPRequestHandler):
    """Chat completions answered at once: the passage's sentence, reordered and reworded."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        found = re.findall(r"Passage \d+ explains [^.]+\.", prompt)
        words = (found[-1] if found else prompt[-400:]).rstrip(".").split()
        # the passage's terms, each once, joined differently: on topic but not a copy
        terms = list(dict.fromkeys(words[3:]))
        text = f"{words[1]} is about " + " and ".join(terms) + ", all in plain words."
        payload = json.dumps(
            {
                "id": "cmpl-bench",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(terms) * 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(port_file: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


class RssSampler(threading.Thread):
    """RSS of this process every `period` seconds, with wall-clock stamps."""

    def __init__(self, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self.stop = period, [], threading.Event()
        self.proc = psutil.Process()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), self.proc.memory_info().rss))
            time.sleep(self.period)

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end + self.period]
        return max(inside, default=0)


def step_windows(instance, run_id: str) -> tuple[float, dict[str, tuple[float, float]]]:
    """Run wall (RUN_START → end) and each step's (start, end) timestamps."""
    starts, windows, run_start, run_end = {}, {}, None, None
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        kind, t = event.event_type_value, record.timestamp
        if kind == "PIPELINE_START":
            run_start = t
        elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            run_end = t
        elif kind == "STEP_START":
            starts[event.step_key] = t
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED") and event.step_key in starts:
            windows[event.step_key] = (starts[event.step_key], t)
    return (run_end or 0) - (run_start or 0), windows


def pipeline(rows: int, shard_rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    seed_dir, home, dagster_home = work / "seeds", work / "home", work / "dagster"
    for d in (seed_dir, home, dagster_home):
        d.mkdir()
    rng = random.Random(0)
    with (seed_dir / "bench.jsonl").open("w") as out:
        for i in range(rows):
            out.write(json.dumps({"text": passage(i, rng), "source": "bench"}) + "\n")
    port_file = work / "port"
    server = subprocess.Popen(
        [sys.executable, __file__, "serve", "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
    )
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.05)
    os.environ.update(
        SYNTH_SEED_DIR=str(seed_dir),
        SYNTH_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        SYNTH_SHARD_ROWS=str(shard_rows),
        SYNTH_ENGINE="openai",
        SYNTH_MODEL="bench-fake",
        SYNTH_OPENAI_BASE_URL=f"http://127.0.0.1:{port_file.read_text()}/v1",
        SYNTH_OPENAI_API_KEY="bench",
    )
    try:
        run_shards(rows)
    finally:
        server.terminate()
        server.wait()


def run_shards(rows: int) -> None:
    import dagster as dg

    from synth_jobs.automation import SHARD_JOB, register_shards
    from synth_jobs.local_run import _job
    from synth_lib.seeds.catalogue import file_shards

    shards = [k for keys in file_shards(os.environ["SYNTH_SEED_DIR"]).values() for k in keys]
    run_config = {
        "execution": {"config": {"in_process": {}}},
        "ops": {
            "rephrasings": {"config": {"max_seeds": 0, "max_passage_chars": 0, "styles": [STYLE]}}
        },
    }
    sampler = RssSampler()
    sampler.start()
    walls, step_total, peaks = [], 0.0, defaultdict(int)
    began = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        register_shards(instance, shards)
        for shard in shards:
            with dg.execute_job(
                _job(SHARD_JOB),
                instance=instance,
                tags={"dagster/partition": shard},
                run_config=run_config,
            ) as result:
                ok, run_id = result.success, result.run_id
            wall, windows = step_windows(instance, run_id)
            walls.append(wall)
            step_total += sum(e - s for s, e in windows.values())
            for step, (s, e) in windows.items():
                peaks[step] = max(peaks[step], sampler.peak(s, e))
            print(f"{shard}: {'ok' if ok else 'FAILED'} run wall {wall:.1f}s", flush=True)
    elapsed = time.perf_counter() - began
    sampler.stop.set()
    run_wall = sum(walls)
    print(
        f"rows={rows} shards={len(shards)} end-to-end {elapsed:.1f}s = {rows / elapsed:.1f} rows/s;"
        f" run walls {run_wall:.1f}s, steps {step_total:.1f}s, overhead "
        f"{(run_wall - step_total) / run_wall:.1%}; process peak RSS "
        f"{max(r for _, r in sampler.samples) / 2**20:.0f} MiB"
    )
    mix_rows = count_mix_rows(Path(os.environ["SYNTH_HOME"]))
    print(f"training_mix rows written: {mix_rows}")
    for step, peak in sorted(peaks.items(), key=lambda kv: -kv[1]):
        print(f"  peak RSS {peak / 2**20:7.0f} MiB  {step}")


def count_mix_rows(home: Path) -> int:
    import polars as pl

    files = list((home / "data" / "training_mix").glob("*.parquet"))
    return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)


def curation(rows: int, shard_rows: int) -> None:
    import numpy as np

    from synth_lib.curation.band_store import BandStore
    from synth_lib.curation.dedup import DedupConfig

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(5000)])
    root = Path(tempfile.mkdtemp(prefix="scale-curation-"))
    store = BandStore(root / "dedup", DedupConfig())
    began = time.perf_counter()
    for k, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        words = vocab[rng.integers(0, len(vocab), size=(n, 60))]
        # every third row copies an earlier row of the same shard with 3 words changed
        copy = np.arange(n) % 3 == 2
        words[copy] = words[np.flatnonzero(copy) - 1]
        words[copy, :3] = vocab[rng.integers(0, len(vocab), size=(int(copy.sum()), 3))]
        texts = [" ".join(w) for w in words]
        ids = [f"row{start + i:08d}" for i in range(n)]
        store.add(f"shard{k:04d}", ids, texts, [True] * n)
        del words, texts, ids
        print(
            f"  shard {k}: {time.perf_counter() - began:.1f}s, RSS "
            f"{psutil.Process().memory_info().rss / 2**20:.0f} MiB",
            flush=True,
        )
    hashed = time.perf_counter() - began
    _, dedup, _ = store.result()
    total = time.perf_counter() - began
    kept = int(dedup.kept.sum())
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"curation rows={rows} shards={-(-rows // shard_rows)}: hash+index {hashed:.1f}s, "
        f"cluster {total - hashed:.1f}s, total {total:.1f}s = {rows / total:,.0f} rows/s; "
        f"kept {kept}; peak RSS {peak:.0f} MiB"
    )


DATASKETCH = """
import json, sys
from datasketch import MinHash, MinHashLSH
docs = [json.loads(line)["text"] for line in open(sys.argv[1])]
n, threshold = int(sys.argv[2]), float(sys.argv[3])
lsh, sketches = MinHashLSH(threshold=threshold, num_perm=128), []
for i, doc in enumerate(docs):
    words = doc.split()
    shingles = {" ".join(words[k : k + n]).encode() for k in range(max(1, len(words) - n + 1))}
    m = MinHash(num_perm=128)
    m.update_batch(list(shingles))
    lsh.insert(str(i), m)
    sketches.append(m)
dups = sum(1 for i, m in enumerate(sketches) if any(int(j) < i for j in lsh.query(m)))
print(f"datasketch: {dups} rows with an earlier near-duplicate")
"""


def timed_process(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, from wait4's rusage."""
    began = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{argv[:3]} exited {child.returncode}")
    return time.perf_counter() - began, usage.ru_maxrss / 1024


def write_dedup_corpus(rows: int, path: Path) -> None:
    """~1.4 KB documents of 170 words; every third copies an earlier one with 8 words changed."""
    rng = random.Random(0)
    vocab = [f"{rng.choice('bcdfgklmnprst')}{rng.choice('aeiou')}w{i}" for i in range(8000)]
    docs: list[list[str]] = []
    with path.open("w") as out:
        for i in range(rows):
            if i % 3 == 2:
                words = list(docs[rng.randrange(len(docs))])
                for _ in range(8):
                    words[rng.randrange(len(words))] = rng.choice(vocab)
            else:
                words = rng.choices(vocab, k=170)
            docs.append(words)
            out.write(json.dumps({"id": str(i), "text": " ".join(words)}) + "\n")


def dedup_cli(rows: int, repeats: int) -> None:
    """`synth dedup` as a user runs it vs a plain datasketch script, both whole processes."""
    import statistics

    from synth_lib.curation.dedup import DedupConfig

    work = Path(tempfile.mkdtemp(prefix="scale-dedup-"))
    write_dedup_corpus(rows, work / "in.jsonl")
    size = (work / "in.jsonl").stat().st_size
    print(f"{rows} docs, {size / rows:.0f} bytes each on average")
    cfg = DedupConfig()
    synth = str(Path(sys.executable).with_name("synth"))
    runs: dict[str, list[tuple[float, float]]] = {"synth dedup": [], "datasketch": []}
    for _ in range(repeats):  # interleaved
        runs["synth dedup"].append(
            timed_process([synth, "dedup", str(work / "in.jsonl"), str(work / "out.jsonl")])
        )
        runs["datasketch"].append(
            timed_process(
                [
                    sys.executable,
                    "-c",
                    DATASKETCH,
                    str(work / "in.jsonl"),
                    str(cfg.ngram),
                    str(cfg.threshold),
                ]
            )
        )
    import polars as pl

    kept = pl.read_ndjson(work / "out.jsonl").get_column("kept").sum()
    print(f"synth dedup: {rows - kept} rows dropped as duplicates")
    med = {k: statistics.median(t for t, _ in v) for k, v in runs.items()}
    for name, v in runs.items():
        print(
            f"{name:>12}: median {med[name]:.2f}s (runs {[round(t, 2) for t, _ in v]}), "
            f"peak RSS {max(r for _, r in v):.0f} MiB"
        )
    print(
        f"whole-process speed ratio datasketch/synth: {med['datasketch'] / med['synth dedup']:.1f}x"
    )


def dedup_memory(rows: int) -> None:
    """One `synth dedup` run on `rows` documents: wall seconds and peak RSS against the input."""
    work = Path(tempfile.mkdtemp(prefix="scale-dedup-memory-"))
    write_dedup_corpus(rows, work / "in.jsonl")
    size = (work / "in.jsonl").stat().st_size / 2**20
    synth = str(Path(sys.executable).with_name("synth"))
    wall, peak = timed_process([synth, "dedup", str(work / "in.jsonl"), str(work / "out.jsonl")])
    print(
        f"synth dedup on {rows} docs ({size:.0f} MiB of JSONL): {wall:.1f}s, "
        f"peak RSS {peak:.0f} MiB = {peak / size:.1f}x the input"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("pipeline", "curation", "dedup", "dedup-memory", "serve"))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--shard-rows", type=int, default=1000)
    parser.add_argument("--port-file", default="")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port_file)
    elif args.mode == "pipeline":
        pipeline(args.rows, args.shard_rows)
    elif args.mode == "dedup":
        dedup_cli(args.rows, args.repeats)
    elif args.mode == "dedup-memory":
        dedup_memory(args.rows)
    else:
        curation(args.rows, args.shard_rows)


if __name__ == "__main__":
    main()
