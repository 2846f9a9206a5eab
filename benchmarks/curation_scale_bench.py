"""Cross-shard curation at scale: what `decontaminated_mix` does, seconds and peak RSS.

`build` writes M mix-schema rows as S Parquet shards: human text seeds (45%), synthetic
instruction-like prompt/response rows (45%), rephrasings of seeds of the same shard (5%, 30%
of their words edited), exact and near copies of earlier rows of any shard (2.5%
each) and a few benchmark leaks per shard.

`run` curates them as the asset does: `curate_shards` over per-shard loaders (each a
Parquet read), then the rejects and the kept rows streamed to their files through
`PolarsParquetIOManager.handle_output`. It runs twice over the same index: cold (every shard
scanned, hashed, embedded) and warm (all cached, the second pass only); `--home` reuses
the index of an earlier run, so both runs are warm in a fresh process. The embedder is a
hashed bag of words (`--embedder bow`, vectorised, no model) by default; `minilm` is the
model the asset uses, which is far slower on CPU (`rate` times it). Peak RSS of each phase
comes from a psutil sampler (50 ms), the process's from rusage.

    python benchmarks/curation_scale_bench.py build --rows 100000 --shards 10 --out DIR
    python benchmarks/curation_scale_bench.py run --shards-dir DIR
    python benchmarks/curation_scale_bench.py rate --texts 2000
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psutil

VOCAB = np.array([f"w{i}" for i in range(20_000)])
TEMPLATE = "Write a short answer to the following request and explain each step you take:"
LEAKS = [f"benchmark question {k} " + " ".join(f"b{k}x{i}" for i in range(30)) for k in range(5)]


class Sampler(threading.Thread):
    """Samples this process's RSS every `period` seconds."""

    def __init__(self, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self.proc = period, [], psutil.Process()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), self.proc.memory_info().rss))
            time.sleep(self.period)

    def peak_mib(self, start: float, end: float) -> float:
        inside = [rss for t, rss in self.samples if start <= t <= end + self.period]
        return max(inside, default=0) / 2**20


def _ids(shard: int, kind: str, texts: list[str]) -> list[str]:
    return [
        hashlib.sha256(f"{shard}/{kind}/{k}/{t}".encode()).hexdigest()[:32]
        for k, t in enumerate(texts)
    ]


def _texts(rng: np.random.Generator, n: int, words: int) -> np.ndarray:
    return VOCAB[rng.integers(0, len(VOCAB), size=(n, words))]


def _edit(rng: np.random.Generator, words: np.ndarray, share: float) -> np.ndarray:
    out = words.copy()
    mask = rng.random(out.shape) < share
    out[mask] = VOCAB[rng.integers(0, len(VOCAB), size=int(mask.sum()))]
    return out


def build(rows: int, shards: int, out: Path) -> None:
    """S shards of the mix schema under `out` (shard names as the mix's)."""
    from synth_lib.mix.shards import to_mix_schema
    from synth_lib.provenance.schema import RowContext, Source, make_row, rows_to_frame

    schema = to_mix_schema(
        rows_to_frame(
            [make_row(stage="text_seeds", payload={"text": "x"}, ctx=RowContext(run_id="b"),
                      source=Source("corpus", "0", "CC0"))],
            {"text": pl.Utf8},
        ),
        "text",
    ).schema  # fmt: skip
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    per = rows // shards
    pool: list[str] = []  # texts of earlier rows, for copies across shards
    began = time.perf_counter()
    for s in range(shards):
        n_seed, n_reph = int(per * 0.45), int(per * 0.05)
        n_copy, n_leak = int(per * 0.025), 5
        n_inst = per - n_seed - n_reph - 2 * n_copy - n_leak
        seed_words = _texts(rng, n_seed, 80)
        seeds = [" ".join(w) for w in seed_words]
        seed_ids = _ids(s, "seed", seeds)
        parent = rng.integers(0, n_seed, size=n_reph)
        rephr = [" ".join(w) for w in _edit(rng, seed_words[parent], 0.3)]
        prompts = [f"{TEMPLATE} " + " ".join(w) for w in _texts(rng, n_inst, 20)]
        answers = [" ".join(w) for w in _texts(rng, n_inst, 60)]
        inst = [f"{p}\n\n{a}" for p, a in zip(prompts, answers, strict=True)]
        pool += seeds[: n_copy // 2] + inst[: n_copy // 2]
        exact = [pool[i] for i in rng.integers(0, len(pool), size=n_copy)]
        near = [" ".join(_edit(rng, np.array(t.split()), 0.03)) for t in exact]
        synth_text = rephr + inst + exact + near + LEAKS
        stages = (
            ["rephrasings"] * n_reph
            + ["instructions"] * n_inst
            + ["instructions"] * (2 * n_copy + n_leak)
        )
        synth_ids = _ids(s, "synthetic", synth_text)
        parents = [[seed_ids[p]] for p in parent] + [[seed_ids[0]]] * (len(synth_text) - n_reph)
        frame = pl.DataFrame(
            {
                "text": seeds + synth_text,
                "prompt": [None] * n_seed
                + [None] * n_reph
                + prompts
                + [None] * (2 * n_copy + n_leak),
                "response": [None] * n_seed
                + [None] * n_reph
                + answers
                + [None] * (2 * n_copy + n_leak),
                "kind": ["text"] * n_seed
                + ["rephrasing"] * n_reph
                + ["instruction"] * (len(synth_text) - n_reph),
                "weight": [1.0] * (n_seed + len(synth_text)),
                "id": seed_ids + synth_ids,
                "parent_ids": [[]] * n_seed + parents,
                "root_seed_ids": [[i] for i in seed_ids] + parents,
                "stage": ["text_seeds"] * n_seed + stages,
                "is_synthetic": [False] * n_seed + [True] * len(synth_text),
                "run_id": ["bench"] * (n_seed + len(synth_text)),
                "created_at": [datetime(2026, 1, 1, tzinfo=UTC)] * (n_seed + len(synth_text)),
            }
        )
        frame = frame.with_columns(
            pl.struct(dataset=pl.lit("corpus"), location=pl.col("id"), license=pl.lit("CC0")).alias(
                "source"
            )
        )
        frame = frame.select(
            [
                pl.col(c).cast(t) if c in frame.columns else pl.lit(None).cast(t).alias(c)
                for c, t in schema.items()
            ]
        ).with_columns(pl.col("verdicts").fill_null([]))
        frame.sample(fraction=1.0, shuffle=True, seed=s).write_parquet(
            out / f"ref-n{per}-{s:05d}.parquet"
        )
        print(f"  shard {s}: {frame.height} rows, {time.perf_counter() - began:.1f}s", flush=True)
    (out / "leaks.jsonl").write_text("".join(f'{{"question": "{t}"}}\n' for t in LEAKS))


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A 384-dim hashed word-count embedding (vectorised): the window's arithmetic at scale
    without a model."""
    words = (
        pl.DataFrame({"t": texts})
        .with_row_index("row")
        .select("row", pl.col("t").str.split(" ").alias("w"))
        .explode("w")
    )
    bucket = (words.get_column("w").hash(seed=0) % 384).cast(pl.Int64).to_numpy()
    rows = words.get_column("row").cast(pl.Int64).to_numpy()
    out = np.zeros((len(texts), 384), dtype=np.float32)
    np.add.at(out, (rows, bucket), 1.0)
    return out


def run(shards_dir: Path, embedder_name: str, home: Path | None) -> None:
    import dagster as dg

    from resources.parquet_io import PolarsParquetIOManager
    from synth_lib.curation.anchor_filter import MiniLMEmbedder
    from synth_lib.curation.decontam import DecontamConfig
    from synth_lib.curation.dedup import DedupConfig
    from synth_lib.curation.incremental import benchmark_digest, curate_shards, fresh_staging
    from synth_lib.curation.steps import CurationSettings, benchmark_index

    files = sorted(shards_dir.glob("*.parquet"))
    spec = {
        "benchmark_paths": [str(shards_dir / "leaks.jsonl")],
        "humaneval": True,
        "ngram": 13,
        "min_overlap": 1,
        "containment": DecontamConfig.containment,
    }
    index = benchmark_index(spec)
    settings = CurationSettings(
        dedup=DedupConfig(ngram=3, threshold=0.5, max_shingle_share=0.05),
        anchored_stages=["rephrasings"],
        anchor_low=0.65,
        anchor_high=0.92,
        coverage_cosine=0.6,
    )
    embedder = MiniLMEmbedder() if embedder_name == "minilm" else bag_of_words
    loads: list[tuple[float, str]] = []  # when each shard was loaded: the phase timeline

    def loader(path: Path):
        def load() -> pl.DataFrame:
            loads.append((time.time(), path.stem))
            return pl.scan_parquet(path).collect()

        return load

    loaders = {f.stem: loader(f) for f in files}
    home = home or Path(tempfile.mkdtemp(prefix="curation-scale-"))
    io = PolarsParquetIOManager(base_dir=str(home / "data"))
    sampler = Sampler()
    sampler.start()
    rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
    print(f"rows={rows} shards={len(files)} embedder={embedder_name} home={home}")
    for label in ("run 1", "run 2"):
        t0 = time.time()
        outcome, work = curate_shards(
            loaders,
            index,
            benchmark_digest(spec, spec["benchmark_paths"]),
            settings,
            home / "curation_index",
            fresh_staging(home / "curation_staging", label),
            embedder,
        )
        t1 = time.time()
        _timeline(sampler, [t for t, _ in loads] + [t1], len(files))
        loads.clear()
        outcome.rejected.sink_parquet(home / "rejected.parquet")
        context = dg.build_output_context(asset_key=dg.AssetKey("decontaminated_mix"))
        io.handle_output(context, outcome.kept)
        t2 = time.time()
        kept = pl.scan_parquet(home / "data" / "decontaminated_mix.parquet").select(pl.len())
        print(
            f"{label}: curate_shards {t1 - t0:.1f}s (peak {sampler.peak_mib(t0, t1):.0f} MiB), "
            f"write kept+rejects {t2 - t1:.1f}s (peak {sampler.peak_mib(t1, t2):.0f} MiB), "
            f"total {t2 - t0:.1f}s; kept {kept.collect().item()}, removed {outcome.removed}, "
            f"anchors {outcome.anchors.reason_counts() if outcome.anchors else None}, "
            f"indexed {work['shards_indexed']} shards",
            flush=True,
        )
    drift = {k: outcome.drift.get(k) for k in ("synthetic_rows", "human_rows", "kl_to_human")}
    print(f"drift {drift}, anchor_coverage {outcome.drift.get('anchor_coverage')}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {peak:.0f} MiB")


def _timeline(sampler: Sampler, marks: list[float], shards: int) -> None:
    """Peak RSS between successive shard loads: first pass (scan + band store add), then
    the second pass (steps, anchor window, staging); the last window of each pass also
    holds what follows it (`store.result()` after the first)."""
    peaks = [f"{sampler.peak_mib(a, b):.0f}" for a, b in itertools.pairwise(marks)]
    print(f"  pass 1 peaks per shard (MiB): {' '.join(peaks[:shards])}")
    print(f"  pass 2 peaks per shard (MiB): {' '.join(peaks[shards:])}", flush=True)


def rate(texts: int) -> None:
    """MiniLM texts per second on this machine, on 80-word texts."""
    from synth_lib.curation.anchor_filter import MiniLMEmbedder

    sample = [" ".join(w) for w in _texts(np.random.default_rng(0), texts, 80)]
    model = MiniLMEmbedder()
    model(sample[:64])
    began = time.perf_counter()
    model(sample)
    took = time.perf_counter() - began
    print(f"MiniLM: {texts} texts in {took:.1f}s = {texts / took:.0f} texts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--rows", type=int, default=100_000)
    b.add_argument("--shards", type=int, default=10)
    b.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--shards-dir", type=Path, required=True)
    r.add_argument("--embedder", choices=["bow", "minilm"], default="bow")
    r.add_argument("--home", type=Path, help="reuse this folder's index (default: a new one)")
    t = sub.add_parser("rate")
    t.add_argument("--texts", type=int, default=2000)
    args = parser.parse_args()
    if args.command == "build":
        build(args.rows, args.shards, args.out)
    elif args.command == "run":
        run(args.shards_dir, args.embedder, args.home)
    else:
        rate(args.texts)


if __name__ == "__main__":
    main()
