"""Incremental near-duplicate detection over shards vs a one-shot run over the same rows.

Rows: ~60-word texts over a 3000-word vocabulary, a third of them edited copies of
earlier ones (so duplicates cross shard boundaries). The index holds all shards but the
last; timed: adding the last shard and clustering everything (what a new shard costs),
against `find_duplicates` over every row (what a one-shot rerun costs). Equality of the
kept flags, cluster ids and reasons is checked every round.

    .venv/bin/python benchmarks/shard_dedup_bench.py --rows 40000 --shards 8 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np

from synth_lib.curation.band_store import BandStore
from synth_lib.curation.dedup import DedupConfig, find_duplicates


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[str], list[bool]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    texts: list[str] = []
    for k in range(n):
        if k % 3 and texts:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 8)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
        else:
            words = rng.choices(vocab, k=60)
        texts.append(" ".join(words))
    return texts, [f"row{k:07d}" for k in range(n)], [bool(k % 2) for k in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts, ids, synthetic = corpus(args.rows)
    config = DedupConfig(ngram=3, threshold=0.5)
    cuts = np.linspace(0, args.rows, args.shards + 1).astype(int)
    one_shot_s, new_shard_s = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        one = find_duplicates(texts, ids, synthetic, config)
        one_shot_s.append(time.perf_counter() - began)
        with tempfile.TemporaryDirectory() as root:
            store = BandStore(root, config)
            for i in range(args.shards - 1):
                a, b = cuts[i], cuts[i + 1]
                store.add(f"s{i}", ids[a:b], texts[a:b], synthetic[a:b])
            a = cuts[-2]
            began = time.perf_counter()
            store.add("last", ids[a:], texts[a:], synthetic[a:])
            _, inc, _ = store.result()
            new_shard_s.append(time.perf_counter() - began)
        assert np.array_equal(inc.kept, one.kept) and inc.cluster_id == one.cluster_id
        assert inc.reason == one.reason
    print(f"rows={args.rows} shards={args.shards} kept={int(one.kept.sum())} equal=True")
    print(f"one-shot over all rows: median {statistics.median(one_shot_s):.2f} s")
    print(f"add the last shard + cluster all: median {statistics.median(new_shard_s):.2f} s")
    ratio = statistics.median(one_shot_s) / statistics.median(new_shard_s)
    print(f"ratio one-shot / incremental: {ratio:.2f}")


if __name__ == "__main__":
    main()
